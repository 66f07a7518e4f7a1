"""The dashboard as a real worker against the real broker and Postgres: traffic in, live
throughput, per-partition lag with Burrow-style status, heartbeats, dead letters, the
Recommender and Generator panels, and the explorer through the recommender's own API.

``Traffic`` and ``wait_for_state`` are shared with the other modules of this folder.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from typing import Any

import pytest
from kafka import KafkaConsumer, OffsetAndMetadata, TopicPartition
from sqlalchemy import text

from shared.cli.replay import Pacer
from shared.config import Settings
from shared.data.movielens import load_films, to_item_event
from shared.events import InteractionEvent
from shared.events.deadletter import dead_letter
from shared.kafka.client import client_options
from shared.kafka.publisher import Publisher
from shared.topics import full_name
from tests.integration.stack_helpers import marquee, seed_movielens
from tests.integration.worker_helpers import eventually, get, service_worker

SERVE = [sys.executable, "-m", "shared.cli.main", "serve", "dashboard"]
#: Sample every second and judge lag over 5 samples, so a test sees statuses in seconds.
FAST = {
    "MARQUEE_DASHBOARD_SAMPLE_SECONDS": "1",
    "MARQUEE_DASHBOARD_DISCOVERY_SECONDS": "2",
    "MARQUEE_DASHBOARD_POSTGRES_SECONDS": "1",
    "MARQUEE_DASHBOARD_LAG_WINDOW": "5",
}
READER_PARTITIONS = range(5)  # of 6: partition 5 is never committed, so it stays UNKNOWN


class Traffic:
    """Interactions at a steady rate, and a reader group that commits half-way behind the
    end on partitions 0-4 (a consumer that falls behind), both on background threads."""

    def __init__(self, settings: Settings, rate: float = 100.0) -> None:
        self.settings = settings
        self.rate = rate
        self.group = f"{settings.topic_prefix}test-readers"
        self.sent = 0
        self._stop = threading.Event()
        self._reading = threading.Event()
        self._threads = [
            threading.Thread(target=self._publish, daemon=True),
            threading.Thread(target=self._read, daemon=True),
        ]

    def __enter__(self) -> Traffic:
        self._reading.set()
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=30)

    def stop_reading(self) -> None:
        self._reading.clear()

    def _publish(self) -> None:
        pacer = Pacer(self.rate)
        with Publisher(self.settings) as publisher:
            n = 0
            while not self._stop.is_set():
                pacer.wait(n)
                publisher.publish(
                    InteractionEvent.create(
                        {"user_id": f"u{n % 97}", "item_id": f"i{n % 50}", "action": "view"},
                        source="urn:test:traffic",
                    )
                )
                n += 1
                self.sent = n

    def _read(self) -> None:
        topic = full_name("interactions", self.settings.topic_prefix)
        consumer = KafkaConsumer(
            **client_options(self.settings), group_id=self.group, enable_auto_commit=False
        )
        try:
            parts = [TopicPartition(topic, p) for p in READER_PARTITIONS]
            consumer.assign(parts)
            while not self._stop.wait(1.0):
                if not self._reading.is_set():
                    continue
                ends = consumer.end_offsets(parts)
                consumer.commit({tp: OffsetAndMetadata(ends[tp] // 2, "", -1) for tp in parts})
        finally:
            consumer.close()


def state(port: int, path: str = "/api/state") -> dict[str, Any]:
    status, body = get(port, path)
    assert status == 200, body
    return json.loads(body)


def wait_for_state(port: int, predicate, timeout: float = 60.0, what: str = "") -> dict:
    """Poll the API until ``predicate(state)`` holds; fail with the last state otherwise."""
    deadline = time.monotonic() + timeout
    while True:
        current = state(port)
        try:
            if predicate(current):
                return current
        except (KeyError, IndexError, TypeError):
            pass
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}: {json.dumps(current)[:3000]}")
        time.sleep(0.5)


def group_rows(current: dict, group: str) -> dict[int, dict]:
    """The group's partitions of ``interactions`` by number ({} until the group shows)."""
    for found in current["lag"]["groups"]:
        for topic in found["topics"] if found["group"] == group else ():
            if topic["topic"] == "interactions":
                return {p["partition"]: p for p in topic["partitions"]}
    return {}


def dead_letters(current: dict, topic: str) -> dict:
    """One DLQ's row of the Overview panel (KeyError until the topic shows)."""
    for row in current["overview"]["dead_letters"]:
        if row["topic"] == topic:
            return row
    raise KeyError(topic)


def add_model_version(engine, status: str, served: tuple, popular: tuple, fit: float) -> None:
    """A row as ``marquee train`` writes it: held-out (P@10, NDCG@10) of model and popularity."""
    holdout = {
        side: {"precision@10": p, "ndcg@10": n}
        for side, (p, n) in (("served", served), ("popularity", popular))
    }
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO model_versions (status, metrics, n_users, n_items, n_interactions,"
                " fit_seconds) VALUES (:s, CAST(:m AS jsonb), 943, 1682, 100000, :f)"
            ),
            {"s": status, "m": json.dumps({"holdout": holdout}), "f": fit},
        )


def add_generated(engine, request_id: str, prompt: str, article: str, timings: dict) -> None:
    """A generated piece as the generator stores it (41 tokens of completion)."""
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO generated_content (request_id, reply_id, kind, prompt, status, text,"
                " model, prompt_tokens, completion_tokens, timings) VALUES (:r, :reply, 'news',"
                " :p, 'ok', :t, 'SmolLM2-135M-Instruct', 24, 41, CAST(:timings AS jsonb))"
            ),
            {
                "r": request_id,
                "reply": f"reply-{request_id}",
                "p": prompt,
                "t": article,
                "timings": json.dumps(timings),
            },
        )


def publish_dead_letter(settings: Settings, partition: int, offset: int, error: str) -> None:
    """What the recommender sends to interactions.dlq for a record it cannot read."""
    letter = dead_letter(
        service="recommender",
        topic=full_name("interactions", settings.topic_prefix),
        partition=partition,
        offset=offset,
        key=b"u1",
        value=b"{not json",
        error=error,
    )
    with Publisher(settings) as publisher:
        publisher.publish(letter, topic="interactions.dlq")


@pytest.fixture
def dashboard(topics, engine, tmp_path):
    with service_worker(topics, tmp_path, SERVE, **FAST) as (_, port):
        yield port, topics, engine


def test_traffic_shows_throughput_and_lag_per_partition(dashboard):
    port, settings, _ = dashboard
    with Traffic(settings, rate=100.0) as traffic:
        current = wait_for_state(
            port,
            lambda s: (
                s["overview"]["throughput"]["interactions"]["events_per_second"] > 0
                and all(
                    group_rows(s, traffic.group)[p]["lag"] > 0
                    and group_rows(s, traffic.group)[p]["lag_seconds"] is not None
                    for p in READER_PARTITIONS
                )
            ),
            what="non-zero events/s and lag on every committed partition",
        )
        rows = group_rows(current, traffic.group)
        assert set(rows) == set(range(6))
        assert rows[5]["status"] == "UNKNOWN" and rows[5]["lag"] is None
        for p in READER_PARTITIONS:
            assert rows[p]["end"] > rows[p]["committed"] > 0
            assert rows[p]["lag"] == rows[p]["end"] - rows[p]["committed"]
            assert rows[p]["status"] in {"OK", "WARN"}, rows[p]
        rate = current["overview"]["throughput"]["interactions"]
        assert 20 < rate["events_per_second"] < 400 and len(rate["series"]) >= 2
        topic = next(t for t in current["topics"] if t["topic"] == "interactions")
        assert topic["partitions"] == 6 and topic["messages"] > 0
        assert topic["retention_ms"] == 7 * 24 * 3600 * 1000

        # The dashboard's own heartbeat, read back from ops.heartbeats.
        (me,) = [i for i in current["overview"]["instances"] if i["service"] == "dashboard"]
        assert me["state"] in {"starting", "ok"} and me["age_seconds"] < 30

        # Prometheus: lag per partition, one status series set to 1.
        status, metrics = get(port, "/metrics")
        assert status == 200
        text_ = metrics.decode()
        labels = f'group="{traffic.group}",partition="0",topic="interactions"'
        assert f"marquee_consumer_lag_messages{{{labels}}}" in text_
        assert f"marquee_consumer_lag_seconds{{{labels}}}" in text_
        unknown = (
            f'marquee_consumer_lag_status{{group="{traffic.group}",partition="5",'
            'status="UNKNOWN",topic="interactions"} 1.0'
        )
        assert unknown in text_

        # The reader stops committing and has no live member: STOP once a window has passed.
        traffic.stop_reading()
        current = wait_for_state(
            port,
            lambda s: all(
                group_rows(s, traffic.group)[p]["status"] == "STOP" for p in READER_PARTITIONS
            ),
            timeout=30,
            what="STOP on every partition of a reader that stopped",
        )
        detail = state(port, "/api/lag")
        history = detail["groups"][traffic.group]["interactions"][0]["history"]
        assert len(history) >= 5 and all(len(point) == 3 for point in history)


def test_panels_read_postgres_heartbeats_and_dead_letters(dashboard):
    port, settings, engine = dashboard
    # Empty states first: nothing trained, nothing generated.
    current = wait_for_state(port, lambda s: s["sources"]["postgres"]["ok"], what="postgres")
    assert current["recommender"]["active"] is None and current["recommender"]["versions"] == []
    assert current["recommender"]["counts"] == {"users": 0, "items": 0, "interactions": 0}
    assert current["generator"]["latest"] == [] and current["generator"]["queue_depth"] is None

    add_model_version(engine, "active", served=(0.21, 0.24), popular=(0.12, 0.11), fit=2.5)
    add_generated(
        engine,
        "req-1",
        "Tram line vote",
        "The council voted 7-2 for the tram.",
        {"queue_seconds": 0.1, "first_token_seconds": 0.4, "total_seconds": 2.4},
    )
    publish_dead_letter(settings, 3, 17, "not a JSON event object: EOF while parsing a value")

    current = wait_for_state(
        port,
        lambda s: (
            s["recommender"]["active"]
            and s["generator"]["latest"]
            # Counted from offsets, read by polling: both must have seen it.
            and (dlq := dead_letters(s, "interactions.dlq"))["count"] == 1
            and len(dlq["latest"]) == 1
        ),
        what="model version, generated piece and dead letter",
    )
    version = current["recommender"]["versions"][0]
    assert version["status"] == "active" and version["fit_seconds"] == 2.5
    assert version["quality"]["precision@10"] == {"model": 0.21, "popularity": 0.12, "ratio": 1.75}
    (piece,) = current["generator"]["latest"]
    assert piece["text"] == "The council voted 7-2 for the tram." and piece["kind"] == "news"
    assert piece["latency_seconds"] == 2.4 and piece["tokens_per_second"] == pytest.approx(20.0)
    assert current["generator"]["totals"]["ok"]["all"] == 1
    (latest,) = dead_letters(current, "interactions.dlq")["latest"]
    assert latest["error"] == "not a JSON event object: EOF while parsing a value"
    assert latest["service"] == "recommender" and latest["source_offset"] == 17


@pytest.mark.timeout(600)
def test_explorer_shows_history_and_the_recommenders_answer(topics, engine, tmp_path):
    seed_movielens(engine, 30_000)
    trained = marquee(topics, "train")
    assert trained.returncode == 0, trained.stdout + trained.stderr
    with Publisher(topics) as pub:  # the films' names, for the recommender to serve
        for film in load_films():
            pub.publish(to_item_event(film))
    recommender = [sys.executable, "-m", "shared.cli.main", "serve", "recommender"]
    (tmp_path / "rec").mkdir()
    (tmp_path / "dash").mkdir()
    # No content encoder: the names are what this test needs, not content factors.
    no_encoder = {"MARQUEE_RECOMMENDER_CONTENT_MODEL_DIR": str(tmp_path / "none")}
    with service_worker(topics, tmp_path / "rec", recommender, **no_encoder) as (_, rec_port):
        url = f"http://127.0.0.1:{rec_port}"
        with service_worker(
            topics, tmp_path / "dash", SERVE, MARQUEE_DASHBOARD_RECOMMENDER_URL=url, **FAST
        ) as (_, port):

            def named() -> dict | None:
                body = state(port, "/api/users/1?k=5")
                return body if all(i["title"] for i in body["recommendations"]["items"]) else None

            body = eventually(named, timeout=60)
            assert body, "the explorer never named the recommended films"
            _, served = get(rec_port, "/users/1/recommendations?k=5")
            served = json.loads(served)

            history = body["history"]
            assert history["total"] > 0 and len(history["events"]) <= 20
            newest = [e["occurred_at"] for e in history["events"]]
            assert newest == sorted(newest, reverse=True)
            recs = body["recommendations"]
            assert recs["strategy"] == "als" == served["strategy"]
            # The recommender's own answer, each item named as it names it.
            assert recs["items"] == served["items"]
            assert all(i["kind"] == "film" and i["title"] for i in recs["items"])

            assert get(port, "/api/users/%00bad")[0] == 400

    # The recommender is gone: the explorer says so, and the history still shows.
    with service_worker(
        topics,
        tmp_path / "dash",
        SERVE,
        MARQUEE_DASHBOARD_RECOMMENDER_URL="http://127.0.0.1:9",
        **FAST,
    ) as (_, port):
        body = state(port, "/api/users/1")
        assert body["history"]["total"] > 0
        assert "cannot reach the recommender" in body["recommendations"]["error"]
