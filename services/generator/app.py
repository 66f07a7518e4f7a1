"""The generator's Faust app: ``content-requests`` in, exactly one ``content-generated`` out.

Requests wait in a bounded queue; a batcher takes up to a batch of them, the engine runs
the batch in a thread (the event loop keeps heartbeating), and each reply is stored in
Postgres before it is published and before its request is acked. So a request replayed
after a crash finds its reply stored and gets it again, identical; nothing is generated
twice; a copy that arrives while its request is still queued waits for that reply. The
agent acks by hand (``noack``): Faust commits an offset only once every offset below it
is acked, so a request never counts as done before its reply exists. A full queue stops
the agent, and Faust stops fetching once the agent's small buffer is full: backpressure.
A batch the engine fails on is answered with error replies, so no request is left
without one.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from shared.db import make_engine
from shared.errors import InvalidEvent
from shared.events.models import (
    ContentChunk,
    ContentChunkEvent,
    ContentRequest,
    GeneratedContent,
    GeneratedContentEvent,
)
from shared.retry import retry_until_done
from shared.service import Service, create_app
from shared.topics import full_name

from .batching import next_batch, run_or_split
from .content_store import ContentStore, storable
from .errors import RequestError
from .sampling import SamplingParams
from .settings import GeneratorSettings

log = logging.getLogger(__name__)

#: ``marquee serve generator`` loads this settings class.
SETTINGS = GeneratorSettings
SOURCE = "urn:marquee:generator"


@dataclass
class Pending:
    """A request waiting for its batch, with the Kafka event to ack once it is answered."""

    event: object
    request: ContentRequest
    prompt: str
    params: SamplingParams
    deadline: float  # time.monotonic()
    queued_at: float
    arrived: float  # the envelope's time, on the time.monotonic() clock


#: The most text a reply may carry: ``GeneratedContent.text``'s bound.
MAX_TEXT = next(
    bound.max_length
    for bound in GeneratedContent.model_fields["text"].metadata
    if hasattr(bound, "max_length")
)


def cut_short(finish: str | None) -> str:
    """The finish reason of a text cut short: ``length``, unless a deadline ended it."""
    return "deadline" if finish == "deadline" else "length"


def fit_reply(reply: GeneratedContent, max_bytes: int) -> GeneratedContent:
    """``reply`` as it is stored and sent: NUL as U+FFFD (see ``storable``), and its text
    cut, as a smaller token budget would have cut it (finish reason ``length`` unless a
    deadline ended it), so that its event stays within ``max_bytes``."""
    reply = reply.model_copy(update={"text": storable(reply.text), "error": storable(reply.error)})
    limit = max_bytes - 512  # the stored event's time and id may encode a little longer
    finish = cut_short(reply.finish_reason)

    def size(r: GeneratedContent) -> int:
        event = GeneratedContentEvent.create(r, source=SOURCE)
        return len(event.model_dump_json(exclude_none=True).encode())

    now = size(reply)
    while now > limit and reply.text:
        keep = max(0, int(len(reply.text) * limit / now) - 64)
        reply = reply.model_copy(update={"text": reply.text[:keep], "finish_reason": finish})
        now = size(reply)
    return reply


def build(settings: GeneratorSettings) -> Service:
    from .engine import Engine, GenerationRequest

    # Requests are costly: Faust fetches no further ahead than the queue holds.
    service = create_app("generator", settings, stream_buffer=settings.generator_queue_size)
    app = service.app
    store = ContentStore(make_engine(settings))
    loaded: dict[str, Engine | str | None] = {"engine": None, "error": None}
    queue: asyncio.Queue[Pending] = asyncio.Queue(maxsize=settings.generator_queue_size)
    topic = app.topic(
        full_name("content-requests", settings.topic_prefix),
        key_serializer="raw",
        value_serializer="raw",
    )
    streams: dict[str, object] = {}
    #: Queued requests by id, with the events of copies that came in meanwhile (acked
    #: once the first copy's reply is out).
    waiting: dict[str, list] = {}
    #: What keeps failing (a reply, a request's admission, the engine), by what it is:
    #: /readyz says so until it succeeds.
    failing: dict[str, str] = {}
    totals = service.counters
    totals.update({"queue_depth": 0, "batch_size": 0, "replies_ok": 0, "replies_error": 0})

    m = service.metrics
    depth = m.gauge("marquee_generator_queue_depth", "Requests waiting for a batch")
    batch_sizes = m.histogram(
        "marquee_generator_batch_size", "Requests per batch", buckets=(1, 2, 4, 8, 16, 32, 64)
    )
    first_token = m.histogram(
        "marquee_generator_first_token_seconds",
        "From dequeue to a request's first token",
        buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
    )
    token_rate = m.histogram(
        "marquee_generator_tokens_per_second",
        "Generated tokens per second, per request",
        buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500),
    )
    latency = m.histogram(
        "marquee_generator_request_seconds",
        "From a request's envelope time to its reply",
        buckets=(0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600),
    )
    replies = m.counter("marquee_generator_replies_total", "Replies published", ("status",))

    def model_check() -> tuple[bool, str]:
        engine = loaded["engine"]
        if engine is None:
            return False, str(loaded["error"] or "loading the model")
        return True, f"{engine.model_id} on {engine.device}"

    def failures_check() -> tuple[bool, str]:
        if failing:
            what, error = next(iter(failing.items()))
            more = f" (and {len(failing) - 1} more)" if len(failing) > 1 else ""
            return False, f"{what} keeps failing: {error}{more}"
        return True, "ok"

    async def until_done(work, what: str) -> None:
        """``retry_until_done``, with the failure shown on /readyz while it lasts."""

        def failed(exc: BaseException) -> None:
            failing[what] = f"{type(exc).__name__}: {exc}"[:300]

        await retry_until_done(
            work, what=what, max_delay=settings.retry_max_seconds, on_failure=failed
        )
        failing.pop(what, None)

    service.require_assignment()
    service.health.add("model", model_check)
    service.health.add("failures", failures_check)

    @app.task
    async def load_model() -> None:
        model_dir = settings.model_dir()
        try:
            loaded["engine"] = await asyncio.to_thread(
                Engine, model_dir, settings.runtime_options()
            )
        except Exception as exc:  # noqa: BLE001 - reported by /readyz and the log
            loaded["error"] = f"cannot load the model from {model_dir}: {exc}"
            log.error("%s (build it with `marquee model build-default`)", loaded["error"])

    async def publish(reply: GeneratedContent, made_at: datetime) -> None:
        # The stored reply's id and time: a replayed request gets the very same event.
        event = GeneratedContentEvent.create(reply, source=SOURCE, id=reply.reply_id, time=made_at)
        await service.publish(event)
        replies.labels(reply.status).inc()
        totals[f"replies_{reply.status}"] += 1

    async def answer(event, reply: GeneratedContent, prompt: str) -> None:
        stored, made_at = await asyncio.to_thread(
            store.save, fit_reply(reply, service.codec.max_bytes), prompt
        )
        await publish(stored, made_at)
        await streams["requests"].ack(event)
        for copy in waiting.pop(reply.request_id, ()):
            await streams["requests"].ack(copy)

    async def deliver(p: Pending, reply: GeneratedContent) -> None:
        await until_done(
            lambda: answer(p.event, reply, p.request.prompt), f"reply to {p.request.request_id}"
        )
        latency.observe(time.monotonic() - p.arrived)

    def error_reply(
        request: ContentRequest, error: str, model: str, queued: float
    ) -> GeneratedContent:
        return GeneratedContent(
            request_id=request.request_id,
            reply_id=str(uuid.uuid4()),
            status="error",
            kind=request.kind,
            error=error[:4000],
            model=model,
            finish_reason="error",
            timings={"queue_seconds": queued, "total_seconds": queued},
        )

    async def admit(event) -> None:
        """Answer from Postgres if the request was answered before; otherwise queue it."""
        msg = event.message
        try:
            parsed = service.decode(msg, "content-requests")
        except InvalidEvent as exc:
            await service.dead_letter(msg, "content-requests", exc)
            await streams["requests"].ack(event)
            return
        request = parsed.data
        # (Admissions run one at a time, so none is queued while Postgres is asked.)
        if request.request_id in waiting:  # a copy of a queued request: wait for its reply
            waiting[request.request_id].append(event)
            return
        stored = await asyncio.to_thread(store.find, request.request_id)
        if stored is not None:
            log.info("request %s was answered before: sending that reply", request.request_id)
            await publish(*stored)
            await streams["requests"].ack(event)
            return
        engine = loaded["engine"]
        now = time.monotonic()
        age = max(0.0, (datetime.now(UTC) - parsed.time).total_seconds())
        budget = request.deadline_seconds or settings.generator_deadline_seconds
        try:
            prompt = engine.render(request.kind, request.prompt)
            params = SamplingParams.of(request)
        except RequestError as exc:
            await answer(
                event, error_reply(request, str(exc), engine.model_id, 0.0), request.prompt
            )
            return
        waiting[request.request_id] = []
        await queue.put(Pending(event, request, prompt, params, now + budget - age, now, now - age))
        depth.set(queue.qsize())
        totals["queue_depth"] = queue.qsize()

    @app.agent(topic, concurrency=1)
    async def accept(stream):
        streams["requests"] = requests = stream.noack()
        while loaded["engine"] is None:  # nothing is taken before the model can answer
            await asyncio.sleep(0.2)
        async for event in requests.events():
            await until_done(lambda event=event: admit(event), "admitting a content request")

    chunks: asyncio.Queue[ContentChunk] = asyncio.Queue()

    def streamer(loop: asyncio.AbstractEventLoop):
        """An engine callback (run in the engine's thread) that queues each piece of text."""
        counts: dict[str, int] = {}

        def on_token(token) -> None:
            if token.text:
                index = counts[token.request_id] = counts.get(token.request_id, -1) + 1
                chunk = ContentChunk(request_id=token.request_id, index=index, text=token.text)
                loop.call_soon_threadsafe(chunks.put_nowait, chunk)

        return on_token

    if settings.generator_stream:

        @app.task
        async def stream_chunks() -> None:
            while True:
                chunk = await chunks.get()
                try:
                    await service.publish(ContentChunkEvent.create(chunk, source=SOURCE))
                except Exception as exc:  # noqa: BLE001 - partial output is best effort
                    log.warning("dropped a chunk of %s: %s", chunk.request_id, exc)

    async def run_batch(batch: list[Pending]) -> list[tuple[Pending, GeneratedContent]]:
        """A reply for each request of ``batch``."""
        engine = loaded["engine"]
        started = time.monotonic()
        live, answered = [], []
        for p in batch:
            if p.deadline <= started:
                reply = error_reply(
                    p.request,
                    "deadline passed while queued",
                    engine.model_id,
                    started - p.queued_at,
                )
                answered.append((p, reply))
            else:
                live.append(p)
        if live:
            answered += await generate(engine, live, started)
        return answered

    async def generate(engine, live: list[Pending], started: float) -> list:
        """``(pending, reply)`` for each request of a batch. If the engine fails on the
        batch (out of memory, say), each request is tried alone, and one that fails alone
        too gets an error reply: none is left unanswered. /readyz reports an engine that
        fails every request."""
        on_token = streamer(asyncio.get_running_loop()) if settings.generator_stream else None

        async def run(group: list[Pending]) -> list:
            requests = [
                GenerationRequest(
                    prompt=p.prompt,
                    params=p.params,
                    request_id=p.request.request_id,
                    deadline=p.deadline,
                )
                for p in group
            ]
            return await asyncio.to_thread(engine.generate_batch, requests, on_token)

        results = await run_or_split(run, live)
        if all(isinstance(r, Exception) for r in results):
            failing["the engine"] = f"{type(results[-1]).__name__}: {results[-1]}"[:300]
        else:
            failing.pop("the engine", None)
        answered = []
        for p, result in zip(live, results, strict=True):
            waited = started - p.queued_at
            if isinstance(result, Exception):
                error = f"generation failed: {type(result).__name__}: {result}"
                answered.append((p, error_reply(p.request, error, engine.model_id, waited)))
                continue
            if not result.ok:
                answered.append((p, error_reply(p.request, result.error, engine.model_id, waited)))
                continue
            text, finish = result.text, result.finish_reason
            if len(text) > MAX_TEXT:
                text, finish = text[:MAX_TEXT], cut_short(finish)
            timings = {
                "queue_seconds": waited,
                "first_token_seconds": result.first_token_seconds,
                "total_seconds": waited + result.total_seconds,
            }
            reply = GeneratedContent(
                request_id=p.request.request_id,
                reply_id=str(uuid.uuid4()),
                status="ok",
                kind=p.request.kind,
                text=text,
                model=engine.model_id,
                prompt_tokens=result.prompt_tokens,
                completion_tokens=result.completion_tokens,
                finish_reason=finish,
                timings=timings,
            )
            answered.append((p, reply))
            if result.first_token_seconds is not None:
                first_token.observe(result.first_token_seconds)
            if result.total_seconds > 0 and result.completion_tokens:
                token_rate.observe(result.completion_tokens / result.total_seconds)
        return answered

    @app.task
    async def batcher() -> None:
        while True:
            batch = await next_batch(
                queue, settings.generator_batch_size, settings.generator_batch_wait_seconds
            )
            depth.set(queue.qsize())
            totals.update(queue_depth=queue.qsize(), batch_size=len(batch))
            batch_sizes.observe(len(batch))
            try:
                answered = await run_batch(batch)
            except Exception as exc:  # noqa: BLE001 - a bug: still one reply per request
                log.exception("a batch of %s requests failed", len(batch))
                model = loaded["engine"].model_id
                error = f"internal error: {type(exc).__name__}: {exc}"
                answered = [(p, error_reply(p.request, error, model, 0.0)) for p in batch]
            await asyncio.gather(*(deliver(p, reply) for p, reply in answered))

    return service
