"""The worker's decisions with in-memory stores and fake Kafka callables: no broker, no
database. What a batch becomes, when fold-ins, reloads and retrains happen, what a
request gets back."""

from __future__ import annotations

import asyncio
import json
import threading
import zlib
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
import pytest

from services.recommender.metrics import RecommenderMetrics
from services.recommender.model_store import TrainingBusy
from services.recommender.settings import RecommenderSettings
from services.recommender.training import Outcome
from services.recommender.worker import RecommenderWorker
from shared.errors import InvalidEvent, TransientError
from shared.events import (
    EventCodec,
    HeartbeatEvent,
    InteractionEvent,
    ItemEvent,
    RecommendationRequestEvent,
)
from shared.metrics import Metrics
from tests.services.recommender import fakes
from tests.services.recommender.fakes import empty, row, seeded, taste_clicks


@dataclass
class Message:
    """A consumed record, as Faust hands it over."""

    value: bytes
    topic: str = "interactions"
    partition: int = 0
    offset: int = 0
    key: bytes | None = None


class Harness:
    """A worker on in-memory stores, with what it published and dead-lettered."""

    def __init__(
        self, interactions, models, *, train=None, catalog=None, encode=None, **settings
    ) -> None:
        self.published: list = []
        self.letters: list[tuple[Message, str, BaseException]] = []
        self.letters_before_write: list[int] = []
        self.registry = Metrics().registry
        self.worker = RecommenderWorker(
            RecommenderSettings(_env_file=None, **settings),
            interactions=interactions,
            models=models,
            publish=self._publish,
            dead_letter=self._dead_letter,
            metrics=RecommenderMetrics.create(Metrics(self.registry)),
            train=in_thread(train or _never_trains),
            catalog=catalog,
            encode=encode,
            content_model="fake-encoder" if encode else None,
        )
        self.interactions, self.models = interactions, models

    async def _publish(self, event) -> None:
        self.published.append(event)

    async def _dead_letter(self, record, topic: str, error: BaseException) -> None:
        self.letters.append((record, topic, error))
        self.letters_before_write.append(self.interactions.writes)

    def metric(self, name: str, **labels) -> float:
        return self.registry.get_sample_value(name, labels) or 0.0


def _never_trains(*args, **kwargs):
    raise AssertionError("no retrain was due")


def in_thread(train):
    """A blocking fake trainer, awaited as the worker awaits its (child-process) trainer."""

    async def run(*args, **kwargs):
        return await asyncio.to_thread(train, *args, **kwargs)

    return run


def encoded(event) -> bytes:
    return EventCodec().encode(event)


def click(user: str, item: str, n: int = 0, action: str = "click", **extra) -> Message:
    event = InteractionEvent.create(
        {"user_id": user, "item_id": item, "action": action, **extra},
        source="urn:test",
        id=f"{user}-{item}-{n}",
    )
    return Message(encoded(event), offset=n)


def served() -> Harness:
    """A worker serving version 1 of the seeded stores."""
    harness = Harness(*seeded())
    asyncio.run(harness.worker.reload())
    assert harness.worker.loaded.version.id == 1
    return harness


def test_a_batch_becomes_rows_and_dead_letters():
    harness = Harness(*seeded())
    heartbeat = HeartbeatEvent.create(
        {"service": "s", "instance": "i", "status": "ok", "started_at": fakes.START, "version": "1"}
    )
    batch = [
        click("u1", "i1", 0),
        Message(b"{not json", offset=1),
        Message(encoded(heartbeat), offset=2),
        click("u2", "i2", 3, action="dwell", dwell_seconds=90.0),
    ]
    rows, letters = harness.worker.classify(batch)
    assert [(r.user_id, r.weight, r.kafka_offset) for r in rows] == [("u1", 2.0, 0), ("u2", 1.5, 3)]
    assert [record.offset for record, _ in letters] == [1, 2]
    assert all(isinstance(error, InvalidEvent) for _, error in letters)
    assert "does not belong on the interactions topic" in str(letters[1][1])


def test_dead_letters_are_confirmed_before_the_batch_is_written():
    harness = Harness(*seeded())
    asyncio.run(harness.worker.ingest([Message(b"{not json"), click("u1", "i1")]))
    assert [(topic, record.value) for record, topic, _ in harness.letters] == [
        ("interactions", b"{not json")
    ]
    assert harness.letters_before_write == [1]  # only the seed's write came before it
    assert harness.worker.counters == {"interactions_stored": 1, "dead_letters": 1}
    assert harness.metric("marquee_events_consumed_total", topic="interactions") == 2
    assert harness.metric("marquee_interactions_stored_total") == 1


def test_only_a_batch_that_stored_something_new_is_folded_in():
    harness = served()
    batch = [click("fresh", "x1", 0), click("fresh", "x2", 1)]
    asyncio.run(harness.worker.ingest(batch))
    assert harness.metric("marquee_fold_ins_total", side="user") == 1
    assert harness.worker.loaded.recommender.has_factors("fresh")
    assert "fresh" in harness.models.rows[1, "user"]

    asyncio.run(harness.worker.ingest(batch))  # redelivered: nothing new, nothing to fold in
    assert harness.metric("marquee_interactions_duplicate_total") == 2
    assert harness.metric("marquee_fold_ins_total", side="user") == 1
    assert harness.metric("marquee_fold_in_seconds_count") == 1


def test_without_a_model_a_batch_is_stored_and_nothing_folded_in():
    interactions, models = empty()
    harness = Harness(interactions, models)
    asyncio.run(harness.worker.ingest([click("u1", "i1")]))
    assert len(interactions.events) == 1
    assert harness.metric("marquee_fold_in_seconds_count") == 0


def test_a_failing_write_is_retried_until_it_succeeds_and_readiness_says_so(monkeypatch):
    harness = Harness(*seeded())
    write, seen = harness.interactions.write, []

    def flaky(rows):
        seen.append(harness.worker.ingest_check())
        if len(seen) == 1:
            raise TransientError("database unavailable")
        return write(rows)

    monkeypatch.setattr(harness.interactions, "write", flaky)
    asyncio.run(harness.worker.ingest([click("u1", "i1")]))
    assert seen == [
        (True, "ok"),
        (False, "retrying a batch: TransientError: database unavailable"),
    ]
    assert harness.worker.ingest_check() == (True, "ok")
    assert harness.metric("marquee_batch_failures_total") == 1
    assert ("urn:test", "u1-i1-0") in harness.interactions.events


def test_a_row_the_database_refuses_goes_to_the_dlq_and_the_rest_are_stored(monkeypatch):
    """Poison is decided by the error's class: refused data is never retried forever."""
    import psycopg2
    from sqlalchemy.exc import DataError

    harness = Harness(*seeded())
    write = harness.interactions.write

    def refuses_u2(rows):
        if any(r.user_id == "u2" for r in rows):
            raise DataError("INSERT ...", {}, psycopg2.DataError("value out of range"))
        return write(rows)

    monkeypatch.setattr(harness.interactions, "write", refuses_u2)
    batch = [click("u1", "i1", 0), click("u2", "i1", 1), click("u3", "i2", 2)]
    asyncio.run(asyncio.wait_for(harness.worker.ingest(batch), 5))  # no endless retry
    [(record, topic, error)] = harness.letters
    assert (record.offset, topic) == (1, "interactions")
    assert isinstance(error, InvalidEvent) and "value out of range" in str(error)
    assert "the database refused it: DataError" in str(error)
    stored = {key[1] for key in harness.interactions.events}
    assert {"u1-i1-0", "u3-i2-2"} <= stored and "u2-i1-1" not in stored
    assert harness.worker.ingest_check() == (True, "ok")
    assert harness.metric("marquee_batch_failures_total") == 0


def test_a_database_that_goes_away_mid_split_retries_the_whole_batch(monkeypatch):
    import psycopg2
    from sqlalchemy.exc import DataError, OperationalError

    harness = Harness(*seeded())
    write, calls = harness.interactions.write, []

    def fails(rows):
        calls.append(len(rows))
        if len(calls) == 1:
            raise DataError("INSERT ...", {}, psycopg2.DataError("bad"))
        if len(calls) == 2:
            raise OperationalError("INSERT ...", {}, psycopg2.OperationalError("gone"))
        return write(rows)

    monkeypatch.setattr(harness.interactions, "write", fails)
    asyncio.run(asyncio.wait_for(harness.worker.ingest([click("u1", "i1")]), 5))
    assert calls == [1, 1, 1] and harness.letters == []
    assert harness.metric("marquee_batch_failures_total") == 1


def test_a_version_is_loaded_only_when_the_active_one_changed():
    interactions, models = empty()
    interactions.write(taste_clicks())
    harness = Harness(interactions, models)
    worker = harness.worker

    asyncio.run(worker.reload())
    assert worker.loaded is None
    assert worker.model_check() == (False, "no active model loaded (run `marquee train`)")

    holdout = {"served": {"precision@10": 0.25, "ndcg@10": 0.5}}
    models.add(fakes.train(interactions), metrics={"holdout": holdout})
    asyncio.run(worker.reload())
    asyncio.run(worker.reload())
    assert worker.model_check() == (True, "model version 1")
    assert models.loads == 1
    assert harness.metric("marquee_model_version") == 1
    assert harness.metric("marquee_model_ndcg_at_10", model="served") == 0.5

    models.add(fakes.train(interactions))
    asyncio.run(worker.reload())
    assert worker.loaded.version.id == 2 and models.loads == 2


def test_a_reload_catches_up_with_what_was_stored_meanwhile_twice():
    """Once for what came after the version's data, again for what was stored while it
    caught up (those batches found no version served to fold into)."""
    interactions, models = seeded()
    interactions.write([row("late", "x1"), row("late", "x2")])
    read, reads = interactions.ingested_since, []

    def ingested_since(since):
        found = read(since)
        if not reads:  # a batch is stored by another worker while this one catches up
            interactions.write([row("during", "y1"), row("during", "y2")])
        reads.append(since)
        return found

    interactions.ingested_since = ingested_since
    harness = Harness(interactions, models)
    asyncio.run(harness.worker.reload())
    assert len(reads) == 2
    rec = harness.worker.loaded.recommender
    assert rec.has_factors("late") and rec.has_factors("during")


def test_a_failed_load_keeps_serving_what_was_served():
    harness = served()
    models = harness.models

    def broken(version, side):
        raise TransientError("database unavailable")

    models.add(fakes.train(harness.interactions))
    models.factors = broken
    asyncio.run(harness.worker.reload())
    assert harness.worker.loaded.version.id == 1


def test_fold_ins_of_other_workers_are_adopted():
    mine = served()
    theirs = Harness(mine.interactions, mine.models)
    asyncio.run(theirs.worker.reload())
    asyncio.run(theirs.worker.ingest([click("fresh", "y1"), click("fresh", "y2", 1)]))
    asyncio.run(mine.worker.adopt_fold_ins())
    assert mine.metric("marquee_fold_ins_adopted_total") == 1
    ours, others = (h.worker.loaded.recommender for h in (mine, theirs))
    assert ours.recommend("fresh", k=3) == others.recommend("fresh", k=3)


def test_without_a_model_there_is_nothing_to_adopt():
    interactions, models = empty()
    harness = Harness(interactions, models)
    asyncio.run(harness.worker.adopt_fold_ins())
    assert harness.metric("marquee_fold_ins_adopted_total") == 0


class Trainer:
    """A retrain that runs until released, then activates a version trained on the store."""

    def __init__(self, interactions) -> None:
        self.interactions = interactions
        self.calls = 0
        self.started, self.release = threading.Event(), threading.Event()

    def __call__(self, models, params, *, gate_ratio, keep, due):
        self.calls += 1
        self.started.set()
        assert self.release.wait(10)
        assert due() is not None  # asked again once the lock is held
        version = models.add(fakes.train(self.interactions))
        return Outcome("active", version, {}, True, 0.1)


def test_a_retrain_starts_only_when_due_and_never_while_one_runs():
    interactions, models = empty()
    trainer = Trainer(interactions)
    harness = Harness(interactions, models, train=trainer, recommender_retrain_min_events=20)
    worker = harness.worker

    async def scenario():
        await worker.check_retrain()  # nothing stored yet: not due
        await worker.training
        assert trainer.calls == 0

        interactions.write(taste_clicks())
        await worker.check_retrain()
        running = worker.training
        assert await asyncio.to_thread(trainer.started.wait, 10)
        await worker.check_retrain()  # one is running: the tick starts nothing
        assert worker.training is running and trainer.calls == 1
        trainer.release.set()
        await running

        # Served at once, without waiting for the model poll.
        assert worker.loaded.version.id == 1
        await worker.check_retrain()  # nothing new since: not due
        await worker.training
        assert trainer.calls == 1

    asyncio.run(scenario())
    assert harness.metric("marquee_retrains_total", outcome="active") == 1
    assert harness.metric("marquee_retrain_seconds_count") == 1


@pytest.mark.parametrize(
    ("error", "counted"),
    [(TrainingBusy("another worker"), {}), (RuntimeError("bug"), {"failed": 1})],
)
def test_a_retrain_another_worker_runs_is_skipped_and_a_failed_one_counted(error, counted):
    interactions, models = empty()
    interactions.write(taste_clicks())

    def train(*args, **kwargs):
        raise error

    harness = Harness(interactions, models, train=train, recommender_retrain_min_events=20)

    async def scenario():
        await harness.worker.check_retrain()
        await harness.worker.training

    asyncio.run(scenario())
    for outcome in ("failed", "active", "rejected", "skipped"):
        assert harness.metric("marquee_retrains_total", outcome=outcome) == counted.get(outcome, 0)
    assert harness.worker.loaded is None


def test_stopping_the_worker_abandons_a_running_retrain():
    interactions, models = empty()
    interactions.write(taste_clicks())
    trainer = Trainer(interactions)
    harness = Harness(interactions, models, train=trainer, recommender_retrain_min_events=20)
    worker = harness.worker

    async def scenario():
        await worker.start()
        await worker.check_retrain()
        assert await asyncio.to_thread(trainer.started.wait, 10)
        await worker.stop()
        assert worker.training.cancelled() or worker.training.done()
        trainer.release.set()  # let the training thread end

    asyncio.run(scenario())
    assert worker.loaded is None


def request(user: str, **extra) -> Message:
    event = RecommendationRequestEvent.create(
        {"request_id": f"req-{user}", "user_id": user, **extra}
    )
    return Message(encoded(event), topic="recommendation-requests")


def test_without_a_model_a_request_gets_an_error_reply():
    interactions, models = empty()
    harness = Harness(interactions, models)
    asyncio.run(harness.worker.answer(request("u1")))
    (reply,) = harness.published
    assert reply.data.request_id == "req-u1" and reply.data.items == []
    assert reply.data.strategy == "popularity" and reply.data.error == "no active model yet"
    assert reply.data.model_version is None
    assert harness.metric("marquee_events_consumed_total", topic="recommendation-requests") == 1


def test_a_request_gets_the_served_models_answer():
    harness = served()
    asyncio.run(harness.worker.answer(request("a1", k=2)))
    asyncio.run(harness.worker.answer(request("nobody", k=2)))
    known, cold = (event.data for event in harness.published)
    assert known.strategy == "als" and known.model_version == 1 and len(known.items) == 2
    assert not {i.item_id for i in known.items} & set(fakes.TASTES["a1"])
    assert cold.strategy == "popularity" and cold.error is None and len(cold.items) == 2
    assert all(event.source == "urn:marquee:recommender" for event in harness.published)


def test_an_invalid_request_is_dead_lettered_and_gets_no_reply():
    harness = served()
    asyncio.run(harness.worker.answer(Message(b"{not json", topic="recommendation-requests")))
    assert harness.published == []
    ((record, topic, error),) = harness.letters
    assert topic == "recommendation-requests" and "JSON" in str(error)


# The catalog.

#: Two tastes over 24 items (the content map needs 20 with factors): users a* read items
#: x*, users b* read items y*; x items are about "alpha", y items about "beta".
LIBRARY = {"a": "x", "b": "y"}


def library_reads() -> list:
    return [
        fakes.row(f"{user}{u}", f"{item}{i}")
        for user, item in LIBRARY.items()
        for u in range(8)
        for i in range(12)
        if (u + i) % 3
    ]


def fake_encode(texts: list[str]) -> np.ndarray:
    """ "alpha" texts point one way, "beta" ones another, each a little apart."""
    out = []
    for text in texts:
        rng = np.random.default_rng(zlib.crc32(text.encode()))
        v = rng.normal(scale=0.1, size=8)
        v[0 if "alpha" in text else 1] += 1.0
        out.append(v / np.linalg.norm(v))
    return np.array(out, dtype=np.float32)


def catalog_item(item_id: str, title: str, n: int = 0) -> Message:
    topic = "x" if "alpha" in title else "y"
    event = ItemEvent.create(
        {
            "item_id": item_id,
            "kind": "article",
            "title": title,
            "tags": [topic],
            "published_at": datetime.now(UTC),
        },
        source="urn:test:newsroom",
    )
    return Message(encoded(event), topic="catalog", offset=n)


def library() -> list[Message]:
    words = {"x": "alpha", "y": "beta"}
    return [
        catalog_item(f"{item}{i}", f"{words[item]} story {i}", n)
        for n, (item, i) in enumerate((item, i) for item in "xy" for i in range(12))
    ]


def catalog_harness() -> tuple[Harness, fakes.MemoryCatalog]:
    """A worker with an encoder serving a version trained on the library's reads, loaded
    while the catalog was still empty."""
    interactions, models = empty()
    interactions.write(library_reads())
    models.add(fakes.train(interactions))
    catalog = fakes.MemoryCatalog(interactions.clock)
    harness = Harness(interactions, models, catalog=catalog, encode=fake_encode)
    asyncio.run(harness.worker.reload())
    return harness, catalog


def test_a_version_loaded_before_any_content_learns_its_map_when_content_arrives():
    harness, catalog = catalog_harness()
    loaded = harness.worker.loaded
    assert loaded.content_map is None  # nothing in the catalog when it loaded
    reads = catalog.full_reads

    # New items alone teach the map nothing (no factors to learn from): no catalog read.
    asyncio.run(harness.worker.ingest_items([catalog_item("early-alpha", "alpha early")]))
    assert loaded.content_map is None and catalog.full_reads == reads
    assert loaded.recommender.factors_of("item", "early-alpha") is None

    # The version's items arrive with content: the map is learnt from the stored catalog,
    # and the new items (this batch's and the earlier one) get factors from their content.
    batch = library() + [
        catalog_item("new-alpha", "alpha breaking", 30),
        catalog_item("new-beta", "beta breaking", 31),
    ]
    asyncio.run(harness.worker.ingest_items(batch))
    assert harness.worker.loaded is loaded and loaded.content_map is not None
    rec = loaded.recommender
    assert {"early-alpha", "new-alpha", "new-beta"} <= {rec.items.external(i) for i in rec.mapped}
    for user, mine, theirs in (("a0", "new-alpha", "new-beta"), ("b0", "new-beta", "new-alpha")):
        ranked = [item for item, _ in rec.recommend(user, k=40)]
        assert ranked.index(mine) < ranked.index(theirs), (user, ranked)
    assert ranked.index("early-alpha") > ranked.index("new-beta")  # b0 does not read alpha

    # Learnt once: a later batch maps with it, without reading the whole catalog again.
    reads = catalog.full_reads
    mapping = loaded.content_map
    asyncio.run(harness.worker.ingest_items([catalog_item("later-alpha", "alpha later")]))
    assert loaded.content_map is mapping and catalog.full_reads == reads
    assert rec.factors_of("item", "later-alpha") is not None


def test_a_kafka_request_may_cap_items_per_tag():
    harness, _ = catalog_harness()
    asyncio.run(harness.worker.ingest_items(library()))
    asyncio.run(harness.worker.answer(request("a0", k=4)))
    asyncio.run(harness.worker.answer(request("a0", k=4, max_per_tag=1)))
    uncapped, capped = (event.data for event in harness.published)
    tag = lambda item: item.item_id[0]  # noqa: E731 - x* items are tagged x, y* y
    assert len(uncapped.items) == 4 and len({tag(i) for i in uncapped.items}) < 4
    assert sorted(tag(i) for i in capped.items) == ["x", "y"]  # one per tag, and no more
    # Out of range (0-200), as the HTTP parameter: a dead letter, no reply.
    wrong = json.loads(request("a0", max_per_tag=200).value)
    wrong["data"]["max_per_tag"] = 201
    asyncio.run(harness.worker.answer(Message(json.dumps(wrong).encode(), topic=_REQUESTS)))
    assert len(harness.published) == 2
    ((_, topic, error),) = harness.letters
    assert topic == _REQUESTS and "max_per_tag" in str(error)


_REQUESTS = "recommendation-requests"
