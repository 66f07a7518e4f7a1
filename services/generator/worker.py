"""The generator's runtime: admit content requests, batch them, answer each exactly once.

A ``mode.Service`` (Faust's pattern for a long-running component: the app starts and
stops it). Its loops (loading the model, the batcher, the token stream) are tasks of the
service; ``app.py`` only wires the topic's agent, health checks and metrics to it. Its
state is attributes (the engine or why it failed to load, the queue, the copies waiting
for a queued request's reply, what keeps failing, the heartbeat counters); its
collaborators (the content store, publish, dead-letter, an engine factory, a clock, the
stream's ack) come in from outside, so the reply policy is unit-tested with in-memory
fakes and no broker.

Offsets and acks: the agent's stream does not ack by itself (``noack``); Faust commits an
offset only once every offset below it is acked. A request is acked after its reply is
stored in Postgres and published (with, for a complete piece, its catalog item on
``catalog``), never before, so it never counts as done before its reply exists. The first
reply stored for a request id is the reply: a request replayed after a crash finds it and
gets it again, identical (same event id and time), and its item again, the same upsert;
nothing is generated twice. A copy that arrives while its request is still queued waits for that
reply and is acked with it. A full queue stops the agent, and Faust stops fetching once
the agent's small buffer is full: backpressure. Whatever happens to a batch (a deadline
passed while it was queued, an engine failure, a bug), each request gets exactly one
reply, an error reply if need be, so none is left without one.

Deadlines: a request whose deadline passes while it waits in the queue is answered at
once by a watchdog (every ``EXPIRY_CHECK_SECONDS``), not when the running batch ends; one
in a batch is cut by the engine, which checks deadlines between its passes (prompt chunks
included), and each reply goes out as its request finishes. Stopping: ``on_stop`` stops
the engine at its next pass; the requests it was working on get no reply and stay
unacked, so the next worker answers them (from the store if a reply got there first).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterable, Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

import mode

from shared.errors import InvalidEvent
from shared.events import EventCodec
from shared.events.envelope import Envelope
from shared.events.models import ContentChunk, ContentChunkEvent, ContentRequest, GeneratedContent
from shared.retry import retry_until_done

from .batching import next_batch, run_or_split, take_expired
from .briefing import Briefing, Part, plan
from .budget import fit, prompt_limit
from .catalog import item_event
from .engine.types import GenerationRequest, GenerationResult, OnResult, OnToken, TokenEvent
from .errors import RequestError, Stopping
from .grounding import Grounder, Grounding, needs_grounding
from .metrics import GeneratorMetrics
from .prompts import template_name, written
from .replies import (
    SOURCE,
    error_reply,
    fit_reply,
    generated_reply,
    nothing_relevant_reply,
    reply_event,
)
from .sampling import SamplingParams
from .settings import GeneratorSettings

log = logging.getLogger(__name__)

#: How often the watchdog looks for queued requests whose deadline has passed.
EXPIRY_CHECK_SECONDS = 0.1
#: The error of a request whose deadline passed before its batch began.
EXPIRED_IN_QUEUE = "deadline passed while queued"


class ReplyStore(Protocol):
    """Replies of record (:class:`~.content_store.ContentStore` on Postgres)."""

    def find(self, request_id: str) -> tuple[GeneratedContent, datetime] | None: ...

    def save(self, reply: GeneratedContent, prompt: str) -> tuple[GeneratedContent, datetime]: ...


class TextEngine(Protocol):
    """What the worker asks of :class:`~.engine.Engine`."""

    @property
    def model_id(self) -> str: ...

    device: str

    context_length: int
    max_prompt_tokens: int

    def render(self, kind: str, prompt: str, items: list[dict[str, str]] | None = None) -> str: ...

    def count_tokens(self, text: str) -> int: ...

    def check_prompt(self, prompt: str) -> int: ...

    def stop(self) -> None: ...

    def generate_batch(
        self,
        requests: Sequence[GenerationRequest],
        on_token: OnToken | None = None,
        on_result: OnResult | None = None,
    ) -> list[GenerationResult]: ...


class Event(Protocol):
    """A consumed event (a Faust event): its ``message`` is the Kafka record."""

    message: Any


Publish = Callable[[Envelope], Awaitable[None]]
#: ``(record, topic, error)``: send ``record`` of ``topic`` to its DLQ, confirmed.
DeadLetter = Callable[[Any, str, BaseException], Awaitable[None]]
#: Marks an event done, so that its offset may be committed.
Ack = Callable[[Event], Awaitable[Any]]


def _utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Clock:
    #: The engine's clock: request deadlines are ``time.monotonic()`` values.
    monotonic: Callable[[], float] = time.monotonic
    #: Wall time, to age a request by the time in its envelope.
    now: Callable[[], datetime] = _utc_now


@dataclass(eq=False)  # one per request taken: compared (and hashed) by identity
class Pending:
    """A request waiting for its batch, with the event to ack once it is answered."""

    event: Event
    request: ContentRequest
    prompt: str
    params: SamplingParams
    deadline: float  # on the monotonic clock, as the times below
    queued_at: float
    arrived: float  # the envelope's time
    #: The catalog items the prompt holds (a digest's, a grounded answer's).
    item_ids: list[str] | None = None
    impression_id: str | None = None
    #: A digest's parts, generated side by side and assembled into its one reply.
    briefing: Briefing | None = None

    def parts(self) -> list[Part]:
        return list(self.briefing.parts) if self.briefing else [Part(self.prompt, self.params)]

    def result(self, results: list[GenerationResult]) -> GenerationResult:
        return self.briefing.assemble(results) if self.briefing else results[0]


class GeneratorWorker(mode.Service):
    def __init__(
        self,
        settings: GeneratorSettings,
        *,
        store: ReplyStore,
        publish: Publish,
        dead_letter: DeadLetter,
        engine_factory: Callable[[], TextEngine],
        metrics: GeneratorMetrics,
        codec: EventCodec | None = None,
        counters: dict[str, float] | None = None,
        clock: Clock | None = None,
        grounder: Grounder | None = None,
    ) -> None:
        super().__init__()
        self.settings = settings
        #: Finds the catalog items of digests and grounded answers (None: they get an error).
        self.grounder = grounder
        #: Requests being grounded (asking the recommender, retrieving), not yet queued.
        self.grounding: set[asyncio.Task] = set()
        self.store = store
        self.publish = publish
        self.dead_letter = dead_letter
        self.engine_factory = engine_factory
        self.metrics = metrics
        #: Decodes requests; its size limit bounds every reply.
        self.codec = codec or EventCodec()
        self.clock = clock or Clock()
        #: Totals reported in every heartbeat (the service's ``counters``).
        self.counters = counters if counters is not None else {}
        self.counters.update(queue_depth=0, batch_size=0, replies_ok=0, replies_error=0)
        #: The model, once loaded; until then ``load_error`` may say why it is not.
        self.engine: TextEngine | None = None
        self.load_error: str | None = None
        self.queue: asyncio.Queue[Pending] = asyncio.Queue(maxsize=settings.generator_queue_size)
        #: Queued requests by id, with the events of copies that came in meanwhile (acked
        #: once the first copy's reply is out).
        self.waiting: dict[str, list[Event]] = {}
        #: What keeps failing (a reply, a request's admission, the engine), by what it is:
        #: /readyz says so until it succeeds.
        self.failing: dict[str, str] = {}
        #: Pieces of text on their way to ``content-stream`` (with ``generator_stream``).
        self.chunks: asyncio.Queue[ContentChunk] = asyncio.Queue()
        #: The running batch's replies on their way, sent as their requests finish.
        self.replying: dict[Pending, asyncio.Future] = {}
        self._ack: Ack | None = None

    # Readiness (/readyz).

    def model_check(self) -> tuple[bool, str]:
        if self.engine is None:
            return False, self.load_error or "loading the model"
        return True, f"{self.engine.model_id} on {self.engine.device}"

    def failures_check(self) -> tuple[bool, str]:
        if self.failing:
            what, error = next(iter(self.failing.items()))
            more = f" (and {len(self.failing) - 1} more)" if len(self.failing) > 1 else ""
            return False, f"{what} keeps failing: {error}{more}"
        return True, "ok"

    async def until_done(self, work: Callable[[], Awaitable[Any]], what: str) -> None:
        """``retry_until_done``, with the failure shown on /readyz while it lasts."""

        def failed(exc: BaseException) -> None:
            self.failing[what] = f"{type(exc).__name__}: {exc}"[:300]

        await retry_until_done(
            work, what=what, max_delay=self.settings.retry_max_seconds, on_failure=failed
        )
        self.failing.pop(what, None)

    # The model.

    @mode.Service.task
    async def _load_model(self) -> None:
        await self.load()

    async def on_stop(self) -> None:
        # The engine's thread would otherwise finish its batch (minutes for a long prompt)
        # before the process could exit; it stops at its next pass instead.
        if self.engine is not None:
            log.info("stopping the engine: what it has not answered stays unacked")
            self.engine.stop()

    async def load(self) -> None:
        """Load the model in a thread; a failure is reported by /readyz and the log."""
        try:
            self.engine = await asyncio.to_thread(self.engine_factory)
        except Exception as exc:  # noqa: BLE001 - reported by /readyz and the log
            self.load_error = f"cannot load the model from {self.settings.model_dir()}: {exc}"
            log.error("%s (build it with `marquee model build-default`)", self.load_error)

    # Admission.

    async def accept(self, events: AsyncIterable[Event], ack: Ack) -> None:
        """The agent's loop over its stream's ``events``, acked with the stream's ``ack``
        (the stream exists only once the agent runs). Nothing is taken before the model
        can answer."""
        self._ack = ack
        while self.engine is None:
            await asyncio.sleep(0.2)
        async for event in events:
            await self.until_done(
                lambda event=event: self.admit(event), "admitting a content request"
            )

    async def admit(self, event: Event) -> None:
        """Answer from the store if the request was answered before, dead-letter it if it
        is no request, answer it at once if it cannot be generated; otherwise queue it."""
        try:
            parsed = self.codec.decode(event.message.value, topic="content-requests")
        except InvalidEvent as exc:
            await self.dead_letter(event.message, "content-requests", exc)
            await self.ack(event)
            return
        request = parsed.data
        # (Admissions run one at a time, so none is queued while the store is asked.)
        if request.request_id in self.waiting:  # a copy of a queued request: wait for its reply
            self.waiting[request.request_id].append(event)
            return
        stored = await asyncio.to_thread(self.store.find, request.request_id)
        if stored is not None:
            log.info("request %s was answered before: sending that reply", request.request_id)
            await self.publish_reply(*stored, request.prompt)
            await self.ack(event)
            return
        engine = self.engine
        now = self.clock.monotonic()
        age = max(0.0, (self.clock.now() - parsed.time).total_seconds())
        budget = request.deadline_seconds or self.settings.generator_deadline_seconds
        if needs_grounding(request):
            # Grounded in the background (a recommender round trip, a retrieval) while
            # later requests are admitted; copies meanwhile wait for its reply.
            self.waiting[request.request_id] = []
            task = asyncio.ensure_future(self.ground(event, request, now + budget - age, now - age))
            self.grounding.add(task)
            task.add_done_callback(self.grounding.discard)
            return
        try:
            prompt = engine.render(request.kind, request.prompt)
            params = SamplingParams.of(request)
            engine.check_prompt(prompt)  # a prompt over the budget is answered now
        except RequestError as exc:
            reply = error_reply(request, str(exc), engine.model_id, 0.0)
            await self.answer(event, reply, request.prompt)
            return
        self.waiting[request.request_id] = []
        await self.queue.put(
            Pending(event, request, prompt, params, now + budget - age, now, now - age)
        )
        self._show_queue()

    async def ground(
        self, event: Event, request: ContentRequest, deadline: float, arrived: float
    ) -> None:
        """Find a grounded request's items, then queue it with a prompt that holds them
        (within the prompt budget); answer it at once when it cannot be (no
        recommendation in time, nothing relevant to a question)."""
        engine = self.engine
        found: list[Grounding | RequestError] = []

        async def find() -> None:
            if self.grounder is None:
                found.append(RequestError("this generator has no catalog access"))
                return
            try:
                found.append(await self.grounder.ground(request))
            except RequestError as exc:  # answered, never retried
                found.append(exc)

        await self.until_done(find, f"grounding {request.request_id}")
        grounding = found[0]
        try:
            if isinstance(grounding, RequestError):
                raise grounding
            if not grounding.items:
                reply = nothing_relevant_reply(request, engine.model_id)
                await self.until_done(
                    lambda: self.answer(event, reply, request.prompt),
                    f"reply to {request.request_id}",
                )
                return
            params = SamplingParams.of(request)
            briefing = None
            if request.kind == "digest":
                briefing = self.briefing(engine, request, grounding, params)
                prompt, item_ids = briefing.parts[0].prompt, briefing.item_ids
            else:
                prompt, item_ids = self.grounded_prompt(engine, request, grounding)
        except RequestError as exc:
            reply = error_reply(request, str(exc), engine.model_id, 0.0)
            await self.until_done(
                lambda: self.answer(event, reply, request.prompt), f"reply to {request.request_id}"
            )
            return
        now = self.clock.monotonic()
        await self.queue.put(
            Pending(
                event,
                request,
                prompt,
                params,
                deadline,
                now,
                arrived,
                item_ids=item_ids,
                impression_id=grounding.impression_id,
                briefing=briefing,
            )
        )
        self._show_queue()

    def briefing(
        self,
        engine: TextEngine,
        request: ContentRequest,
        grounding: Grounding,
        params: SamplingParams,
    ) -> Briefing:
        """A digest's parts (see :mod:`.briefing`), each prompt within the budget."""
        briefing = plan(
            [item.prompt_fields() for item in grounding.items],
            request.prompt,
            params,
            opening=lambda items: written("digest", "opening", request.prompt, items),
            render=engine.render,
            count=engine.count_tokens,
            max_prompt_tokens=engine.max_prompt_tokens,
            context_length=engine.context_length,
        )
        for part in briefing.parts:
            engine.check_prompt(part.prompt)
        return briefing

    def grounded_prompt(
        self, engine: TextEngine, request: ContentRequest, grounding: Grounding
    ) -> tuple[str, list[str]]:
        """The prompt with as many of the items as fit the prompt budget (room left for
        ``max_new_tokens`` of answer), and the ids of those it holds."""
        name = template_name(request.kind, grounded=True)
        limit = prompt_limit(
            engine.max_prompt_tokens, engine.context_length, request.max_new_tokens
        )
        items = fit(
            [item.prompt_fields() for item in grounding.items],
            lambda items: engine.render(name, request.prompt, items),
            engine.count_tokens,
            limit,
        )
        if not items:
            raise RequestError(f"no catalog item fits the prompt budget of {limit} tokens")
        prompt = engine.render(name, request.prompt, items)
        engine.check_prompt(prompt)
        return prompt, [item["item_id"] for item in items]

    async def ack(self, event: Event) -> None:
        assert self._ack is not None, "acks come from the stream accept() consumes"
        await self._ack(event)

    # Replies.

    async def publish_reply(self, reply: GeneratedContent, made_at: datetime, prompt: str) -> None:
        """Publish a stored reply and, for a complete piece, its catalog item; both are
        confirmed when this returns (the request may then be acked)."""
        await self.publish(reply_event(reply, made_at))
        item = item_event(reply, made_at, prompt, self.codec.max_bytes)
        if item is not None:
            await self.publish(item)
        self.metrics.replies.labels(reply.status).inc()
        self.counters[f"replies_{reply.status}"] += 1

    async def answer(self, event: Event, reply: GeneratedContent, prompt: str) -> None:
        """Store ``reply`` (the stored one wins), publish it, then ack the request and any
        copies that waited for it."""
        stored, made_at = await asyncio.to_thread(
            self.store.save, fit_reply(reply, self.codec.max_bytes), prompt
        )
        await self.publish_reply(stored, made_at, prompt)
        await self.ack(event)
        for copy in self.waiting.pop(reply.request_id, ()):
            await self.ack(copy)

    async def deliver(self, p: Pending, reply: GeneratedContent) -> None:
        await self.until_done(
            lambda: self.answer(p.event, reply, p.request.prompt),
            f"reply to {p.request.request_id}",
        )
        self.metrics.request_seconds.observe(self.clock.monotonic() - p.arrived)

    # Deadlines in the queue.

    @mode.Service.task
    async def _expire_queued(self) -> None:
        while not self.should_stop:
            await self.sleep(EXPIRY_CHECK_SECONDS)
            await self.expire_queued()

    async def expire_queued(self) -> None:
        """Answer each queued request whose deadline has passed, now: a batch that runs
        long (a long prompt) delays no other past its deadline."""
        now = self.clock.monotonic()
        expired = take_expired(self.queue, lambda p: p.deadline <= now)
        if expired:
            self._show_queue()
            await asyncio.gather(*(self.deliver(p, self._expired(p, now)) for p in expired))

    def _expired(self, p: Pending, now: float) -> GeneratedContent:
        return error_reply(p.request, EXPIRED_IN_QUEUE, self.engine.model_id, now - p.queued_at)

    # Batches.

    @mode.Service.task
    async def _batches(self) -> None:
        while not self.should_stop:
            await self.answer_next_batch()

    async def answer_next_batch(self) -> None:
        """Take the next batch from the queue and deliver a reply for each request."""
        batch = await next_batch(
            self.queue,
            self.settings.generator_batch_size,
            self.settings.generator_batch_wait_seconds,
        )
        self._show_queue(batch_size=len(batch))
        self.metrics.batch_size.observe(len(batch))
        self.replying = {}
        try:
            answered = await self.run_batch(batch)
        except Stopping:
            unanswered = len(batch) - len(self.replying)
            log.info("stopping: %s requests of the batch are left for the next worker", unanswered)
            answered = []
        except Exception as exc:  # noqa: BLE001 - a bug: still one reply per request
            log.exception("a batch of %s requests failed", len(batch))
            model = self.engine.model_id
            error = f"internal error: {type(exc).__name__}: {exc}"
            answered = [
                (p, error_reply(p.request, error, model, 0.0))
                for p in batch
                if p not in self.replying
            ]
        for p, reply in answered:
            self.reply(p, reply)
        await asyncio.gather(*self.replying.values())

    def reply(self, p: Pending, reply: GeneratedContent) -> None:
        """Send ``reply`` to ``p`` now (stored, published, acked), in the background of
        the batch, which waits for it before it ends."""
        self.replying[p] = asyncio.ensure_future(self.deliver(p, reply))

    async def run_batch(self, batch: list[Pending]) -> list[tuple[Pending, GeneratedContent]]:
        """A reply for each request of ``batch`` not sent already (see :meth:`reply`);
        those whose deadline passed while they were queued get an error reply without
        being generated."""
        engine = self.engine
        started = self.clock.monotonic()
        live, answered = [], []
        for p in batch:
            if p.deadline <= started:
                answered.append((p, self._expired(p, started)))
            else:
                live.append(p)
        if live:
            answered += await self.generate(engine, live, started)
        return answered

    async def generate(
        self, engine: TextEngine, live: list[Pending], started: float
    ) -> list[tuple[Pending, GeneratedContent]]:
        """``(pending, reply)`` for each request of a batch whose reply was not sent as it
        finished. If the engine fails on the batch (out of memory, say), each request it
        had not finished is tried alone, and one that fails alone too gets an error reply:
        none is left unanswered. /readyz reports an engine that fails every request."""
        loop = asyncio.get_running_loop()
        on_token = self._streamer(loop) if self.settings.generator_stream else None
        finished: dict[Pending, GenerationResult] = {}

        def done(p: Pending, result: GenerationResult) -> None:  # on the loop
            if p not in finished:
                finished[p] = result
                if p.briefing is not None and on_token is not None and result.ok:
                    self._stream_whole(p.request.request_id, result.text)
                self.reply(p, self._result_reply(p, result, started))

        async def run(group: list[Pending]) -> list[GenerationResult]:
            todo = [p for p in group if p not in finished]
            # A digest is several rows of the engine's batch (its parts): each row's
            # owner and place, so that the owner is answered once its last part is done.
            rows: list[tuple[Pending, int]] = []
            requests = []
            for p in todo:
                for n, part in enumerate(p.parts()):
                    rows.append((p, n))
                    requests.append(
                        GenerationRequest(
                            prompt=part.prompt,
                            params=part.params,
                            request_id=p.request.request_id,
                            deadline=p.deadline,
                        )
                    )
            parts: dict[Pending, dict[int, GenerationResult]] = {p: {} for p in todo}

            def part_done(index: int, result: GenerationResult) -> None:  # on the loop
                p, n = rows[index]
                parts[p].setdefault(n, result)
                if len(parts[p]) == len(p.parts()):
                    done(p, p.result([parts[p][i] for i in range(len(parts[p]))]))

            def on_result(index: int, result: GenerationResult) -> None:  # engine thread
                loop.call_soon_threadsafe(part_done, index, result)

            # A digest's text is assembled from its parts, so it streams whole (done()).
            single = {i for i, (p, _) in enumerate(rows) if p.briefing is None}

            def stream(token: TokenEvent) -> None:  # engine thread
                if token.index in single:
                    on_token(token)

            if todo:
                results = await asyncio.to_thread(
                    engine.generate_batch, requests, stream if on_token else None, on_result
                )
                for index, result in enumerate(results):
                    part_done(index, result)  # an engine that reported none as it went
            return [finished[p] for p in group]

        results = await run_or_split(run, live)
        if all(isinstance(r, Exception) for r in results):
            self.failing["the engine"] = f"{type(results[-1]).__name__}: {results[-1]}"[:300]
        else:
            self.failing.pop("the engine", None)
        answered = []
        for p, result in zip(live, results, strict=True):
            if isinstance(result, Exception):
                error = f"generation failed: {type(result).__name__}: {result}"
                answered.append(
                    (p, error_reply(p.request, error, engine.model_id, started - p.queued_at))
                )
        return answered

    def _result_reply(
        self, p: Pending, result: GenerationResult, started: float
    ) -> GeneratedContent:
        if result.ok:
            self._observe(result)
        reply = generated_reply(p.request, result, self.engine.model_id, started - p.queued_at)
        if p.item_ids is not None and reply.status == "ok":
            reply = reply.model_copy(
                update={"item_ids": p.item_ids, "impression_id": p.impression_id}
            )
        return reply

    def _observe(self, result: GenerationResult) -> None:
        if result.first_token_seconds is not None:
            self.metrics.first_token_seconds.observe(result.first_token_seconds)
        if result.total_seconds > 0 and result.completion_tokens:
            self.metrics.tokens_per_second.observe(result.completion_tokens / result.total_seconds)

    def _show_queue(self, **counters: float) -> None:
        self.metrics.queue_depth.set(self.queue.qsize())
        self.counters.update(queue_depth=self.queue.qsize(), **counters)

    # Partial output (``content-stream``).

    def _streamer(self, loop: asyncio.AbstractEventLoop) -> OnToken:
        """An engine callback (run in the engine's thread) that queues each piece of text."""
        counts: dict[str, int] = {}

        def on_token(token: TokenEvent) -> None:
            if token.text:
                index = counts[token.request_id] = counts.get(token.request_id, -1) + 1
                chunk = ContentChunk(request_id=token.request_id, index=index, text=token.text)
                loop.call_soon_threadsafe(self.chunks.put_nowait, chunk)

        return on_token

    def _stream_whole(self, request_id: str, text: str) -> None:
        if text:
            self.chunks.put_nowait(ContentChunk(request_id=request_id, index=0, text=text))

    @mode.Service.task
    async def _stream_chunks(self) -> None:
        while self.settings.generator_stream and not self.should_stop:
            await self.publish_chunk(await self.chunks.get())

    async def publish_chunk(self, chunk: ContentChunk) -> None:
        try:
            await self.publish(ContentChunkEvent.create(chunk, source=SOURCE))
        except Exception as exc:  # noqa: BLE001 - partial output is best effort
            log.warning("dropped a chunk of %s: %s", chunk.request_id, exc)
