"""The generator's reply policy with an in-memory store, a fake engine and fake Kafka
callables: no broker, no database, no model. One reply per request, whatever happens."""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

from services.generator.engine.types import GenerationResult, TokenEvent
from services.generator.errors import ModelError, RequestError, Stopping
from services.generator.metrics import GeneratorMetrics
from services.generator.replies import MAX_TEXT
from services.generator.settings import GeneratorSettings
from services.generator.worker import Clock, GeneratorWorker
from shared.errors import TransientError
from shared.events import ContentRequestEvent, EventCodec, ItemEvent
from shared.metrics import Metrics

MODEL_DIR = Path("/models/fake")


@dataclass(frozen=True)
class Message:
    """A consumed record: the worker reads its value and dead-letters it whole."""

    value: bytes


@dataclass(eq=False)
class Event:
    """A Faust event: compared by identity, as acks are."""

    message: Message


class FakeStore:
    """The content store in memory: the first reply saved for a request is its reply."""

    def __init__(self, log: list[str]) -> None:
        self.replies: dict[str, tuple] = {}
        self.prompts: dict[str, str] = {}
        self.log = log
        self.failures = 0  # how many saves fail before one succeeds
        self.on_save = lambda: None

    def find(self, request_id: str):
        return self.replies.get(request_id)

    def save(self, reply, prompt: str):
        self.on_save()
        if self.failures:
            self.failures -= 1
            raise TransientError("database unavailable")
        self.log.append(f"save {reply.request_id}")
        made_at = datetime(2024, 1, 1, tzinfo=UTC) + timedelta(seconds=len(self.replies))
        self.replies.setdefault(reply.request_id, (reply, made_at))
        self.prompts.setdefault(reply.request_id, prompt)
        return self.replies[reply.request_id]


class FakeEngine:
    """Echoes each prompt back, or what ``texts`` says for it; a batch holding a prompt in
    ``poison`` raises, as one too big for memory would; ``broken`` fails every batch. A
    prompt of more words than ``max_prompt_tokens`` is over the budget. Before a prompt in
    ``gates`` is answered, its event must be set (the engine thread waits, as for a long
    prompt); once ``stop`` is called, the next request raises ``Stopping``."""

    model_id = "fake-model"
    device = "cpu"
    context_length = 8192

    def __init__(self) -> None:
        self.batches: list[list[str]] = []
        self.texts: dict[str, tuple[str, str]] = {}
        self.poison: set[str] = set()
        self.broken = False
        self.max_prompt_tokens = 100
        self.gates: dict[str, threading.Event] = {}
        self.stopped = threading.Event()

    def render(self, kind: str, prompt: str, items=None) -> str:
        if prompt == "too long":
            raise RequestError("the prompt is 9000 tokens; the context holds 8192")
        if items is not None:
            return f"{kind}: {prompt} " + " ".join(f"[{i['item_id']}] {i['title']}" for i in items)
        return f"{kind}: {prompt}"

    def count_tokens(self, text: str) -> int:
        return len(text.split())

    def check_prompt(self, prompt: str) -> int:
        words = len(prompt.split())
        if words > self.max_prompt_tokens:
            raise RequestError(f"the prompt is {words} tokens; at most {self.max_prompt_tokens}")
        return words

    def stop(self) -> None:
        self.stopped.set()

    def generate_batch(self, requests, on_token=None, on_result=None):
        prompts = [r.prompt for r in requests]
        self.batches.append(prompts)
        if self.broken or self.poison & set(prompts):
            raise MemoryError("out of memory")
        results = []
        for index, r in enumerate(requests):
            if r.prompt in self.gates:
                assert self.gates[r.prompt].wait(10), "a gate of the test was never opened"
            if self.stopped.is_set():
                raise Stopping("the engine is stopping")
            text, finish = self.texts.get(r.prompt, (f"About {r.prompt}.", "stop"))
            if on_token is not None:
                for n, piece in enumerate(text.split(" ")):
                    token = TokenEvent(index, r.request_id, n, piece if n == 0 else f" {piece}")
                    on_token(token)
            results.append(
                GenerationResult(
                    request_id=r.request_id,
                    text=text,
                    token_ids=tuple(range(len(text.split(" ")))),
                    prompt_tokens=len(r.prompt.split()),
                    finish_reason=finish,
                    first_token_seconds=0.01,
                    total_seconds=0.1,
                )
            )
            if on_result is not None:
                on_result(index, results[-1])
        return results


class Harness:
    """A worker on fakes, with what it stored, published, dead-lettered and acked."""

    def __init__(
        self, *, codec: EventCodec | None = None, clock=None, grounder=None, **settings
    ) -> None:
        self.log: list[str] = []
        self.engine = FakeEngine()
        self.store = FakeStore(self.log)
        self.published: list = []
        self.items: list = []  # what went to the catalog
        self.letters: list = []
        self.acked: list[Event] = []
        self.registry = Metrics().registry
        self.factory = lambda: self.engine
        self.worker = GeneratorWorker(
            GeneratorSettings(
                _env_file=None,
                generator_model_dir=MODEL_DIR,
                generator_batch_wait_seconds=0,
                **settings,
            ),
            store=self.store,
            publish=self._publish,
            dead_letter=self._dead_letter,
            engine_factory=lambda: self.factory(),
            metrics=GeneratorMetrics.create(Metrics(self.registry)),
            codec=codec or EventCodec(),
            clock=clock,
            grounder=grounder,
        )

    async def _publish(self, event) -> None:
        if isinstance(event, ItemEvent):
            self.log.append(f"publish item {event.data.item_id}")
            self.items.append(event)
            return
        self.log.append(f"publish {event.data.request_id}")
        self.published.append(event)

    async def _dead_letter(self, record, topic: str, error: BaseException) -> None:
        self.letters.append((record, topic, error))

    async def _ack(self, event: Event) -> None:
        self.log.append("ack")
        self.acked.append(event)

    def send(self, *events: Event) -> None:
        """The agent handing ``events`` over, the model loaded first."""

        async def stream():
            for event in events:
                yield event

        async def go():
            if self.worker.engine is None:
                await self.worker.load()
            await self.worker.accept(stream(), self._ack)
            await asyncio.gather(*self.worker.grounding)  # digests, grounded answers

        asyncio.run(go())

    def batch(self) -> None:
        asyncio.run(self.worker.answer_next_batch())

    def replies(self) -> dict[str, object]:
        return {e.data.request_id: e.data for e in self.published}

    def metric(self, name: str, **labels) -> float:
        return self.registry.get_sample_value(name, labels) or 0.0


def request(request_id: str = "r-1", *, time: datetime | None = None, **fields) -> Event:
    data = {"request_id": request_id, "kind": "news", "prompt": f"story {request_id}", **fields}
    event = ContentRequestEvent.create(data, **({"time": time} if time else {}))
    return Event(Message(EventCodec().encode(event)))


def test_a_reply_is_stored_then_published_then_its_request_acked():
    h = Harness()
    event = request()
    h.send(event)
    assert h.worker.queue.qsize() == 1 and not h.acked and not h.published
    assert h.worker.counters["queue_depth"] == 1
    h.batch()
    assert h.log == ["save r-1", "publish r-1", "publish item gen-r-1", "ack"]
    assert h.acked == [event]
    (published,) = h.published
    reply, made_at = h.store.replies["r-1"]
    assert published.data == reply and published.id == reply.reply_id and published.time == made_at
    assert (
        reply.status == "ok"
        and reply.text == "About news: story r-1."
        and reply.model == "fake-model"
    )
    assert reply.finish_reason == "stop" and reply.completion_tokens == 4
    assert h.store.prompts["r-1"] == "story r-1"  # the request's prompt, not the rendered one
    (item,) = h.items  # the complete piece, in the catalog
    assert item.time == made_at and item.source == published.source
    assert item.data.model_dump(exclude_none=True) == {
        "item_id": "gen-r-1",
        "kind": "news",
        "title": "About news: story r-1.",
        "summary": "About news: story r-1.",
        "body": "About news: story r-1.",
        "tags": ["news"],
        "published_at": made_at,
        "hidden": False,
    }
    assert h.worker.counters == {
        "queue_depth": 0,
        "batch_size": 1,
        "replies_ok": 1,
        "replies_error": 0,
    }
    assert h.metric("marquee_generator_replies_total", status="ok") == 1
    assert h.metric("marquee_generator_first_token_seconds_count") == 1
    assert h.metric("marquee_generator_request_seconds_count") == 1
    assert h.worker.failures_check() == (True, "ok")


def test_copies_of_a_queued_request_wait_for_its_reply_and_are_acked_with_it():
    h = Harness()
    first, copy, other = request("r-1"), request("r-1"), request("r-2")
    h.send(first, copy, other)
    assert h.worker.queue.qsize() == 2 and not h.acked  # the copy waits, unqueued
    h.batch()
    assert h.engine.batches == [["news: story r-1", "news: story r-2"]]  # generated once
    assert [e.data.request_id for e in h.published] == ["r-1", "r-2"]
    assert set(map(id, h.acked)) == {id(first), id(copy), id(other)}
    assert not h.worker.waiting


def test_a_replayed_request_gets_its_stored_reply_again_identical():
    h = Harness()
    h.send(request())
    h.batch()
    again = request()
    h.send(again)  # redelivered after a crash, or sent again by a retrying client
    assert h.worker.queue.empty() and h.acked[-1] is again
    assert len(h.engine.batches) == 1  # not generated twice
    first, second = h.published
    assert first.model_dump() == second.model_dump()
    first, second = h.items  # the same upsert again: harmless
    assert first.model_dump() == second.model_dump()


def test_only_complete_pieces_of_public_kinds_become_catalog_items():
    h = Harness()
    h.engine.texts["news: cut"] = ("A long story", "length")
    h.engine.texts["news: late"] = ("A late story", "deadline")
    h.send(
        request("r-1"),
        request("r-2", kind="assistant", grounded=False),
        request("r-3", prompt="cut"),
        request("r-4", prompt="late"),
        request("r-5", prompt="too long"),  # an error reply
    )
    h.batch()
    assert len(h.published) == 5
    assert [i.data.item_id for i in h.items] == ["gen-r-1", "gen-r-3"]


def test_a_request_is_acked_only_once_its_item_is_confirmed_too():
    h = Harness(retry_max_seconds=0.01)
    publish, failures = h._publish, [1]

    async def flaky(event) -> None:
        if isinstance(event, ItemEvent) and failures:
            failures.pop()
            raise TransientError("broker unavailable")
        await publish(event)

    h.worker.publish = flaky
    h.send(request())
    h.batch()
    assert h.log == [
        "save r-1", "publish r-1",  # the item failed: not acked
        "save r-1", "publish r-1", "publish item gen-r-1", "ack",  # the stored reply again
    ]  # fmt: skip
    assert h.published[0].model_dump() == h.published[1].model_dump()


def test_a_deadline_that_passes_while_queued_gets_an_error_reply_without_generating():
    clock = SimpleNamespace(time=1000.0)  # moves only when told to
    h = Harness(clock=Clock(monotonic=lambda: clock.time))
    h.send(request("r-1", deadline_seconds=5), request("r-2", deadline_seconds=60))
    clock.time += 10  # the batch starts 10 s later
    h.batch()
    late, kept = h.replies()["r-1"], h.replies()["r-2"]
    assert late.status == "error" and late.error == "deadline passed while queued"
    assert late.finish_reason == "error" and late.timings.queue_seconds == 10
    assert kept.status == "ok" and kept.timings.queue_seconds == 10
    assert h.engine.batches == [["news: story r-2"]]
    assert len(h.acked) == 2


def test_a_request_is_aged_by_the_time_in_its_envelope():
    h = Harness()
    sent = datetime.now(UTC) - timedelta(seconds=30)
    h.send(request("r-1", time=sent, deadline_seconds=1))
    (pending,) = h.worker.queue._queue
    assert pending.deadline < pending.queued_at - 28  # 1 s budget, 30 s gone
    h.batch()
    assert h.replies()["r-1"].error == "deadline passed while queued"


def test_a_failing_batch_is_split_and_only_the_request_that_fails_alone_gets_an_error():
    h = Harness()
    h.engine.poison = {"news: story bad"}
    h.send(request("a"), request("bad"), request("b"))
    h.batch()
    assert h.engine.batches == [
        ["news: story a", "news: story bad", "news: story b"],
        ["news: story a"],
        ["news: story bad"],
        ["news: story b"],
    ]
    replies = h.replies()
    assert replies["a"].status == "ok" and replies["b"].status == "ok"
    assert replies["bad"].status == "error"
    assert replies["bad"].error == "generation failed: MemoryError: out of memory"
    assert len(h.acked) == 3 and h.worker.counters["replies_error"] == 1
    assert h.worker.failures_check() == (True, "ok")  # the engine still answers others


def test_an_engine_that_fails_every_request_shows_on_readyz_until_it_answers():
    h = Harness()
    h.engine.broken = True
    h.send(request("a"), request("b"))
    h.batch()
    assert {r.status for r in h.replies().values()} == {"error"}
    assert len(h.acked) == 2
    ready, why = h.worker.failures_check()
    assert not ready and why == "the engine keeps failing: MemoryError: out of memory"
    h.engine.broken = False
    h.send(request("c"))
    h.batch()
    assert h.replies()["c"].status == "ok" and h.worker.failures_check() == (True, "ok")


def test_a_bug_in_a_batch_still_answers_every_request(monkeypatch):
    h = Harness()
    h.send(request("a"), request("b"))

    async def bug(batch):
        raise KeyError("oops")

    monkeypatch.setattr(h.worker, "run_batch", bug)
    h.batch()
    assert {r.error for r in h.replies().values()} == {"internal error: KeyError: 'oops'"}
    assert len(h.acked) == 2


def test_text_over_the_schema_bound_is_cut_as_a_token_budget_would_cut_it():
    h = Harness(codec=EventCodec(max_bytes=1024 * 1024))
    h.engine.texts = {
        "news: story long": ("x" * (MAX_TEXT + 10), "stop"),
        "news: story late": ("y" * (MAX_TEXT + 10), "deadline"),
    }
    h.send(request("long"), request("late"))
    h.batch()
    long, late = h.replies()["long"], h.replies()["late"]
    assert long.text == "x" * MAX_TEXT and long.finish_reason == "length"
    assert late.text == "y" * MAX_TEXT and late.finish_reason == "deadline"


def test_a_reply_too_big_for_one_event_is_cut_to_fit_before_it_is_stored():
    codec = EventCodec(max_bytes=8 * 1024)
    h = Harness(codec=codec)
    text = "word " * 5000
    h.engine.texts = {"news: story r-1": (text, "stop")}
    h.send(request())
    h.batch()
    (event,) = h.published
    assert text.startswith(event.data.text) and len(event.data.text) > 4000
    assert event.data.finish_reason == "length"
    assert h.store.replies["r-1"][0] == event.data  # stored as sent
    codec.encode(event)  # raises if it is too big


def test_a_request_that_can_never_succeed_is_answered_at_once():
    h = Harness()
    event = request(prompt="too long")
    h.send(event)
    assert h.worker.queue.empty()
    (reply,) = h.replies().values()
    assert reply.status == "error" and "context holds 8192" in reply.error
    assert h.acked == [event] and not h.engine.batches


def test_an_event_that_is_no_request_is_dead_lettered_and_acked():
    h = Harness()
    event = Event(Message(b'{"nope": 1}'))
    h.send(event)
    ((record, topic, _),) = h.letters
    assert record is event.message and topic == "content-requests"
    assert h.acked == [event] and not h.published and h.worker.queue.empty()


def test_a_reply_that_cannot_be_stored_is_retried_and_shown_on_readyz_meanwhile():
    h = Harness()
    h.store.failures = 1
    seen = []
    h.store.on_save = lambda: seen.append(h.worker.failures_check())
    h.send(request())
    h.batch()
    assert seen == [
        (True, "ok"),
        (False, "reply to r-1 keeps failing: TransientError: database unavailable"),
    ]
    assert len(h.published) == 1 and len(h.acked) == 1
    assert h.worker.failures_check() == (True, "ok")


def test_a_model_that_cannot_be_loaded_is_reported_by_readyz():
    h = Harness()
    assert h.worker.model_check() == (False, "loading the model")

    def missing():
        raise ModelError("no model directory here")

    h.factory = missing
    asyncio.run(h.worker.load())
    assert h.worker.engine is None
    assert h.worker.model_check() == (
        False,
        f"cannot load the model from {MODEL_DIR}: no model directory here",
    )
    h.factory = lambda: h.engine
    asyncio.run(h.worker.load())
    assert h.worker.model_check() == (True, "fake-model on cpu")


def test_partial_output_is_queued_in_order_and_published_best_effort():
    h = Harness(generator_stream=True)
    h.send(request())

    async def go():
        await h.worker.answer_next_batch()
        await asyncio.sleep(0)  # the engine thread's callbacks run on the loop
        chunks = []
        while not h.worker.chunks.empty():
            chunks.append(h.worker.chunks.get_nowait())
        return chunks

    chunks = asyncio.run(go())
    assert [c.index for c in chunks] == list(range(len(chunks)))
    assert "".join(c.text for c in chunks) == h.replies()["r-1"].text
    asyncio.run(h.worker.publish_chunk(chunks[0]))
    assert h.published[-1].data == chunks[0]

    async def down(event):
        raise TransientError("broker unavailable")

    h.worker.publish = down
    asyncio.run(h.worker.publish_chunk(chunks[1]))  # dropped with a warning, not raised


def test_a_prompt_over_the_token_budget_is_answered_at_once_with_the_numbers():
    h = Harness()
    h.engine.max_prompt_tokens = 3
    event = request(prompt="a prompt of five words")  # six, rendered
    h.send(event)
    assert h.worker.queue.empty() and not h.engine.batches and h.acked == [event]
    (reply,) = h.replies().values()
    assert reply.status == "error" and reply.error == "the prompt is 6 tokens; at most 3"


def wait_for(condition, what: str):
    async def waiting():
        for _ in range(500):
            if condition():
                return
            await asyncio.sleep(0.01)
        raise AssertionError(f"never happened: {what}")

    return waiting()


def test_queued_requests_past_their_deadline_are_answered_while_a_batch_runs():
    """A batch that runs long (a long prompt) makes no request behind it wait past its
    deadline: the watchdog answers each at its deadline, the others stay queued."""
    clock = SimpleNamespace(time=1000.0)
    h = Harness(clock=Clock(monotonic=lambda: clock.time), generator_batch_size=1)
    long = h.engine.gates["news: story long"] = threading.Event()

    async def go():
        await h.worker.load()
        await h.worker.accept(stream(request("long")), h._ack)
        running = asyncio.ensure_future(h.worker.answer_next_batch())
        await wait_for(lambda: h.engine.batches, "the long batch starts")
        await h.worker.accept(
            stream(request("soon", deadline_seconds=5), request("later", deadline_seconds=60)),
            h._ack,
        )
        await h.worker.expire_queued()
        assert not h.published  # nothing is late yet
        clock.time += 10
        await h.worker.expire_queued()
        assert list(h.replies()) == ["soon"] and not running.done()
        assert h.worker.queue.qsize() == 1 and h.worker.counters["queue_depth"] == 1
        long.set()
        await running
        await h.worker.answer_next_batch()

    asyncio.run(go())
    replies = h.replies()
    late = replies["soon"]
    assert late.status == "error" and late.error == "deadline passed while queued"
    assert late.timings.queue_seconds == 10
    assert replies["long"].status == "ok" and replies["later"].status == "ok"
    assert h.engine.batches == [["news: story long"], ["news: story later"]]
    assert len(h.acked) == 3 and len(h.published) == 3


async def stream(*events):
    for event in events:
        yield event


def test_each_reply_of_a_batch_goes_out_as_its_request_finishes():
    h = Harness()
    slow = h.engine.gates["news: story slow"] = threading.Event()

    async def go():
        await h.worker.load()
        await h.worker.accept(stream(request("quick"), request("slow")), h._ack)
        running = asyncio.ensure_future(h.worker.answer_next_batch())
        await wait_for(lambda: "quick" in h.replies(), "the quick reply")
        assert not running.done() and "slow" not in h.replies()
        slow.set()
        await running

    asyncio.run(go())
    assert list(h.replies()) == ["quick", "slow"] and len(h.acked) == 2
    assert h.engine.batches == [["news: story quick", "news: story slow"]]


def test_a_batch_that_fails_after_some_requests_finished_retries_only_the_rest():
    h = Harness()
    h.engine.poison = {"news: story bad"}
    finished_first = h.engine.generate_batch

    def generate_batch(requests, on_token=None, on_result=None):
        if len(requests) > 1:  # the first finishes, then the batch runs out of memory
            finished_first(requests[:1], on_token, on_result)
            raise MemoryError("out of memory")
        return finished_first(requests, on_token, on_result)

    h.engine.generate_batch = generate_batch
    h.send(request("a"), request("bad"), request("b"))
    h.batch()
    assert h.engine.batches == [
        ["news: story a"],
        ["news: story bad"],
        ["news: story b"],
    ]  # "a" is not generated again
    replies = h.replies()
    assert replies["a"].status == "ok" and replies["b"].status == "ok"
    assert replies["bad"].error == "generation failed: MemoryError: out of memory"
    assert len(h.published) == 3 and len(h.acked) == 3


def test_stopping_leaves_unfinished_requests_unanswered_and_unacked():
    """SIGTERM mid-batch: what finished is answered, the rest is left for the next worker
    (unacked, so redelivered), and nothing is retried or answered with an error."""
    h = Harness()
    gate = h.engine.gates["news: story cut"] = threading.Event()
    done, cut = request("done"), request("cut")

    async def go():
        await h.worker.load()
        await h.worker.accept(stream(done, cut), h._ack)
        running = asyncio.ensure_future(h.worker.answer_next_batch())
        await wait_for(lambda: "done" in h.replies(), "the first reply")
        await h.worker.on_stop()  # what mode calls first when the app stops
        gate.set()
        await running

    asyncio.run(go())
    assert list(h.replies()) == ["done"] and h.acked == [done]
    assert len(h.engine.batches) == 1 and h.engine.stopped.is_set()
    assert h.worker.counters["replies_error"] == 0


def test_the_service_runs_the_watchdog_and_stops_the_engine_when_it_stops():
    h = Harness(generator_batch_size=1)
    gate = h.engine.gates["news: story long"] = threading.Event()
    incoming: asyncio.Queue = asyncio.Queue()

    async def events():
        while True:
            yield await incoming.get()

    async def go():
        await h.worker.start()  # loads the model, runs the batcher and the watchdog
        agent = asyncio.ensure_future(h.worker.accept(events(), h._ack))
        incoming.put_nowait(request("long"))
        await wait_for(lambda: h.engine.batches, "the long batch starts")
        incoming.put_nowait(request("short", deadline_seconds=0.2))
        await wait_for(lambda: "short" in h.replies(), "the watchdog's reply")
        await h.worker.stop()
        gate.set()
        agent.cancel()

    asyncio.run(go())
    assert h.replies()["short"].error == "deadline passed while queued"
    assert h.engine.stopped.is_set() and "long" not in h.replies()
