"""The batch ingest through rebalances mid-stream: a second worker joins while the first is
ingesting, then the first leaves while events still flow. Nothing is lost and nothing is
counted twice: rows, and every user x item confidence, match what was published."""

from __future__ import annotations

import sys
import time
from collections import Counter
from contextlib import ExitStack
from threading import Thread

from sqlalchemy import text

from shared.events import InteractionEvent
from shared.kafka.publisher import Publisher
from shared.topics import full_name
from tests.integration.kafka_helpers import group_partitions
from tests.integration.worker_helpers import eventually, service_worker

SERVE = [sys.executable, "-m", "shared.cli.main", "serve", "recommender"]
LIVE = {"wait_for": "/livez"}  # no model: the workers ingest, they do not serve
#: Small batches, so the stream is still flowing when the group changes.
SMALL = {
    "MARQUEE_RECOMMENDER_INGEST_BATCH_SIZE": "50",
    "MARQUEE_KAFKA_SESSION_TIMEOUT_SECONDS": "6",
}
WEIGHT = {"view": 1.0, "click": 2.0, "like": 4.0}
#: Published at ~400 events/s: the stream lasts ~40 s, through both rebalances.
TOTAL = 16_000


def events(start: int, stop: int) -> list[InteractionEvent]:
    actions = list(WEIGHT)
    return [
        InteractionEvent.create(
            {"user_id": f"u{n % 61}", "item_id": f"i{n % 13}", "action": actions[n % 3]},
            source="urn:test",
            id=f"ev-{n}",
        )
        for n in range(start, stop)
    ]


def stored(engine) -> int:
    with engine.connect() as conn:
        return conn.execute(text("SELECT count(*) FROM interactions")).scalar_one()


def ingest_members(admin, settings) -> list[list[int]]:
    """Per member of the recommender's ingest group, its partitions of ``interactions``."""
    return group_partitions(
        admin,
        f"{settings.topic_prefix}marquee-recommender-ingest",
        full_name("interactions", settings.topic_prefix),
    )


def publish_steadily(settings, batch: list[InteractionEvent], every: float = 0.25) -> Thread:
    """Publish ``batch`` 100 events at a time in a thread: a stream that is still flowing
    while workers join and leave."""

    def run() -> None:
        with Publisher(settings) as pub:
            for n in range(0, len(batch), 100):
                pub.publish_many(batch[n : n + 100])
                time.sleep(every)

    thread = Thread(target=run, daemon=True)
    thread.start()
    return thread


def test_a_rebalance_mid_stream_loses_and_double_counts_nothing(engine, topics, admin, tmp_path):
    published = events(0, TOTAL)
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
    with ExitStack() as stack:
        first, _ = stack.enter_context(
            service_worker(topics, tmp_path / "a", SERVE, **LIVE, **SMALL)
        )
        flowing = publish_steadily(topics, published)
        assert eventually(lambda: stored(engine) > 0, timeout=60)
        # The second worker joins mid-stream: the group rebalances under the first.
        stack.enter_context(service_worker(topics, tmp_path / "b", SERVE, **LIVE, **SMALL))

        def split_in_two():
            members = ingest_members(admin, topics)
            return len(members) == 2 and all(members) and members

        split = eventually(split_in_two, timeout=60)
        assert split and sorted(sum(split, [])) == list(range(6)), split
        # The first leaves while events still flow: the second takes every partition.
        assert flowing.is_alive(), "the stream ended before the group changed: publish more"
        first.terminate()
        first.wait(timeout=30)
        assert flowing.is_alive(), "the stream ended before the first worker left: publish more"
        flowing.join(timeout=120)
        assert eventually(lambda: stored(engine) == len(published), timeout=120), stored(engine)
        assert eventually(lambda: ingest_members(admin, topics) == [list(range(6))], timeout=30)

    expected_events = Counter((e.data.user_id, e.data.item_id) for e in published)
    expected_confidence: Counter = Counter()
    for e in published:
        expected_confidence[e.data.user_id, e.data.item_id] += WEIGHT[e.data.action]
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT user_id, item_id, events, confidence FROM user_item"))
        found = {(u, i): (n, c) for u, i, n, c in rows}
        ids = conn.execute(text("SELECT count(DISTINCT event_id) FROM interactions")).scalar_one()
    assert stored(engine) == ids == len(published)
    assert found == {
        pair: (expected_events[pair], expected_confidence[pair]) for pair in expected_events
    }
