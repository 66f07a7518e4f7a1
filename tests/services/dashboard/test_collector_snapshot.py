"""The collector's bookkeeping and the API's shape, with in-memory sources (no broker here:
the real-broker path is tests/integration/dashboard/test_api.py)."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from services.dashboard.collector import Collector
from services.dashboard.exporter import LagExporter
from services.dashboard.kafka_source import GroupInfo, Record, TopicInfo
from services.dashboard.settings import DashboardSettings
from shared.events import EventCodec, HeartbeatEvent
from shared.events.deadletter import dead_letter
from shared.metrics import Metrics
from shared.topics import TOPICS

PREFIX = "t."
INTERACTIONS = f"{PREFIX}interactions"
HEARTBEATS = f"{PREFIX}ops.heartbeats"
DLQ = f"{PREFIX}interactions.dlq"


class Clock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


class FakeKafka:
    """The KafkaSource interface over dictionaries a test changes between ticks."""

    def __init__(self) -> None:
        self.info = {
            f"{PREFIX}{name}": TopicInfo(spec.partitions, 1, spec.retention_ms, "delete")
            for name, spec in TOPICS.items()
        }
        self.ends = {(t, p): 0 for t, i in self.info.items() for p in range(i.partitions)}
        self.commits: dict[str, dict] = {}
        self.members: dict[str, GroupInfo] = {}
        self.records: list[Record] = []
        self.positions: dict = {}
        self.fail: Exception | None = None

    def topics(self, names):
        if self.fail:
            raise self.fail
        return {n: self.info[n] for n in names if n in self.info}

    def group_ids(self):
        return sorted(set(self.commits) | set(self.members))

    def end_offsets(self, partitions):
        if self.fail:
            raise self.fail
        return {p: self.ends[p] for p in partitions}

    def begin_offsets(self, partitions):
        return {p: 0 for p in partitions}

    def committed(self, groups):
        return {g: dict(self.commits.get(g, {})) for g in groups}

    def describe(self, groups):
        return {g: self.members[g] for g in groups if g in self.members}

    def follow(self, starts):
        self.positions = dict(starts)

    @property
    def following(self):
        return set(self.positions)

    def offsets_since(self, partitions, seconds):
        return {p: 0 for p in partitions}

    def position(self, partition):
        return self.positions[partition]

    def seek(self, partition, offset):
        self.positions[partition] = offset

    def poll(self, max_records=2000):
        records, self.records = self.records, []
        for r in records:
            self.positions[(r.topic, r.partition)] = r.offset + 1
        return records

    def close(self):
        pass


class FakePostgres:
    def __init__(self) -> None:
        self.fail: Exception | None = None
        self.pieces: list[dict] = []

    def versions(self):
        if self.fail:
            raise self.fail
        holdout = {
            "served": {"precision@10": 0.2, "ndcg@10": 0.25},
            "popularity": {"precision@10": 0.1, "ndcg@10": 0.2},
        }
        return [
            {
                "id": 2,
                "status": "active",
                "trained_at": "2026-01-01T00:00:00+00:00",
                "metrics": {"holdout": holdout},
                "n_users": 943,
                "n_items": 1682,
                "n_interactions": 100_000,
                "fit_seconds": 1.5,
            },
            {
                "id": 1,
                "status": "rejected",
                "trained_at": "2025-12-31T00:00:00+00:00",
                "metrics": {},
                "n_users": 10,
                "n_items": 10,
                "n_interactions": 10,
                "fit_seconds": 0.1,
            },
        ]

    def counts(self):
        return {"users": 943, "items": 1682, "interactions": 100_000}

    def generated(self):
        timings = {"queue_seconds": 0.1, "first_token_seconds": 0.5, "total_seconds": 2.5}
        return {
            "latest": self.pieces,
            "recent": [(41, timings)] * 3,
            "totals": {"ok": {"all": 3, "last_hour": 3}, "error": {"all": 1, "last_hour": 0}},
        }


@pytest.fixture
def world():
    clock, kafka, pg = Clock(), FakeKafka(), FakePostgres()
    settings = DashboardSettings(
        _env_file=None,
        topic_prefix=PREFIX,
        dashboard_sample_seconds=1,
        dashboard_lag_window=3,
        dashboard_history_seconds=10,
    )
    metrics = Metrics()
    exporter = LagExporter(metrics)
    collector = Collector(
        settings, kafka=lambda: kafka, postgres=pg, clock=clock, on_sample=exporter.update
    )
    return collector, clock, kafka, pg, metrics


def tick(collector, clock, seconds=1.0):
    collector.sample_kafka()
    clock.now += seconds


def state(collector) -> dict:
    return json.loads(collector.snapshot.body)


def test_before_any_sample_every_panel_is_there_and_empty(world):
    collector, *_ = world
    body = state(collector)
    assert set(body) >= {"sources", "overview", "lag", "topics", "recommender", "generator"}
    assert body["overview"]["instances"] == [] and body["lag"]["groups"] == []
    assert body["recommender"]["active"] is None
    generator = body["generator"]
    assert generator["latest"] == [] and generator["queue_depth"] is None
    assert generator["percentiles"] is None
    assert not body["sources"]["kafka"]["ok"]


def test_throughput_and_lag_per_partition(world):
    collector, clock, kafka, _, metrics = world
    group = "t.marquee-recommender"
    for n in range(5):
        for p in range(6):
            kafka.ends[(INTERACTIONS, p)] = 100 * (n + 1)
        # Partitions 0-4 committed (partition 4 fully caught up); 5 never committed.
        kafka.commits[group] = {(INTERACTIONS, p): 50 * (n + 1) for p in range(4)}
        kafka.commits[group][(INTERACTIONS, 4)] = 100 * (n + 1)
        kafka.members[group] = GroupInfo(
            "Stable", 1, frozenset((INTERACTIONS, p) for p in range(6))
        )
        tick(collector, clock)

    body = state(collector)
    rates = body["overview"]["throughput"]["interactions"]
    assert rates["events_per_second"] == pytest.approx(600.0)  # 6 partitions x 100/s
    assert len(rates["series"]) == 4

    (row,) = body["lag"]["groups"]
    assert row["group"] == group and row["state"] == "Stable" and row["members"] == 1
    (topic,) = row["topics"]
    assert topic["topic"] == "interactions"
    parts = {p["partition"]: p for p in topic["partitions"]}
    assert set(parts) == set(range(6))
    assert parts[0]["lag"] == 250 and parts[0]["committed"] == 250 and parts[0]["end"] == 500
    # Offset 250 was appended between the 2nd (end 200) and 3rd (end 300) sample: ~2.5 s ago.
    assert parts[0]["lag_seconds"] == pytest.approx(2.5, abs=0.6)
    assert parts[0]["status"] == "WARN"  # moving, lag grew every sample
    assert parts[4]["lag"] == 0 and parts[4]["status"] == "OK"
    assert parts[5]["status"] == "UNKNOWN" and parts[5]["lag"] is None
    assert topic["status"] == "WARN" and topic["lag"] == 4 * 250
    assert topic["series"][-1][1] == 1000

    text = metrics.render().decode()
    assert (
        f'marquee_consumer_lag_messages{{group="{group}",partition="0",topic="interactions"}} 250.0'
        in text
    )
    assert (
        'marquee_consumer_lag_status{group="t.marquee-recommender",partition="5",'
        'status="UNKNOWN",topic="interactions"} 1.0' in text
    )
    assert 'marquee_topic_end_offset{partition="0",topic="interactions"} 500.0' in text

    detail = json.loads(collector.snapshot.lag_body())
    history = detail["groups"][group]["interactions"][0]["history"]
    assert [h[1] for h in history] == [50, 100, 150, 200, 250]


def test_stopped_group_and_its_series_go_away_when_the_group_does(world):
    collector, clock, kafka, _, metrics = world
    kafka.commits["old"] = {(INTERACTIONS, 0): 1}
    for n in range(4):
        kafka.ends[(INTERACTIONS, 0)] = 10 + n
        tick(collector, clock)
    (group,) = state(collector)["lag"]["groups"]
    part = group["topics"][0]["partitions"][0]
    assert part["status"] == "STOP" and group["state"] == "Unknown"
    assert 'group="old"' in metrics.render().decode()

    del kafka.commits["old"]
    clock.now += 60  # past the next discovery
    tick(collector, clock)
    assert state(collector)["lag"]["groups"] == []
    assert 'group="old"' not in metrics.render().decode()


def heartbeat_record(offset, instance, service="generator", counters=None, at=None):
    event = HeartbeatEvent.create(
        {
            "service": service,
            "instance": instance,
            "status": "ok",
            "started_at": datetime(2026, 1, 1, tzinfo=UTC),
            "version": "0.1.0",
            "counters": counters or {},
        },
        time=at,
    )
    return Record(HEARTBEATS, 0, offset, 0, EventCodec().encode(event))


def test_heartbeats_dead_letters_and_generator_counters(world):
    collector, clock, kafka, _, metrics = world
    tick(collector, clock)  # discovery: follows heartbeats and DLQs
    now = datetime.fromtimestamp(clock.now, UTC)
    kafka.records = [
        heartbeat_record(0, "gen-1", counters={"queue_depth": 3, "batch_size": 4}, at=now),
        heartbeat_record(1, "rec-1", service="recommender", at=now),
        Record(HEARTBEATS, 0, 2, 0, b"not json"),
    ]
    letter = dead_letter(
        service="recommender",
        topic=INTERACTIONS,
        partition=2,
        offset=7,
        key=b"u1",
        value=b"{bad",
        error="not a JSON event object: EOF while parsing",
    )
    kafka.records.append(Record(DLQ, 0, 0, 0, EventCodec(max_bytes=1 << 20).encode(letter)))
    kafka.ends[(DLQ, 0)] = 1
    tick(collector, clock)

    body = state(collector)
    instances = {i["instance"]: i for i in body["overview"]["instances"]}
    assert set(instances) == {"gen-1", "rec-1"}
    assert instances["gen-1"]["state"] == "ok" and instances["gen-1"]["age_seconds"] == 0.0
    assert body["overview"]["undecodable_records"] == 1
    dlq = next(d for d in body["overview"]["dead_letters"] if d["topic"] == "interactions.dlq")
    assert dlq["count"] == 1 and dlq["source"] == "interactions"
    assert dlq["latest"][0]["error"].startswith("not a JSON event object")
    assert dlq["latest"][0]["source_partition"] == 2 and dlq["latest"][0]["source_offset"] == 7
    assert body["generator"]["queue_depth"] == 3 and body["generator"]["batch_size"] == 4
    assert 'marquee_dlq_messages{topic="interactions.dlq"} 1.0' in metrics.render().decode()

    clock.now += 120  # no heartbeat for two minutes
    tick(collector, clock)
    body = state(collector)
    assert {i["state"] for i in body["overview"]["instances"]} == {"missing"}
    assert body["generator"]["queue_depth"] is None and body["generator"]["instances"] == []


def test_postgres_panels_and_generated_pieces(world):
    collector, clock, _, pg, _ = world
    pg.pieces = [
        {
            "request_id": "r1",
            "kind": "news",
            "prompt": "Tram line vote",
            "status": "ok",
            "text": "The council voted...",
            "error": None,
            "model": "smollm2",
            "prompt_tokens": 12,
            "completion_tokens": 41,
            "finish_reason": "stop",
            "timings": {"first_token_seconds": 0.5, "total_seconds": 2.5},
            "item_id": None,
            "created_at": "2026-01-01T00:00:00+00:00",
        }
    ]
    collector.sample_postgres()
    body = state(collector)
    rec = body["recommender"]
    assert rec["active"]["id"] == 2 and rec["counts"]["interactions"] == 100_000
    quality = rec["versions"][0]["quality"]
    assert quality["precision@10"] == {"model": 0.2, "popularity": 0.1, "ratio": 2.0}
    assert rec["versions"][1]["quality"]["ndcg@10"]["ratio"] is None
    gen = body["generator"]
    assert gen["percentiles"]["tokens_per_second"]["p50"] == pytest.approx(20.0)
    assert gen["percentiles"]["time_to_first_token_seconds"]["p95"] == 0.5
    assert gen["totals"]["error"] == {"all": 1, "last_hour": 0}
    (piece,) = gen["latest"]
    assert piece["text"] == "The council voted..." and piece["latency_seconds"] == 2.5
    assert body["sources"]["postgres"]["ok"]


def test_failures_are_shown_and_recovered_from(world):
    collector, clock, kafka, pg, metrics = world
    pg.fail = RuntimeError("relation model_versions does not exist\nLINE 1: ...")
    collector.sample_postgres()
    kafka.fail = ConnectionError("broker gone")
    tick(collector, clock)
    body = state(collector)
    assert body["sources"]["postgres"]["error"] == (
        "RuntimeError: relation model_versions does not exist"
    )
    assert body["sources"]["kafka"]["error"] == "ConnectionError: broker gone"
    assert 'marquee_dashboard_source_up{source="kafka"} 0.0' in metrics.render().decode()
    ok, detail = collector.healthy(collector.kafka_state, within=10)
    assert not ok and "broker gone" in detail

    kafka.fail = None
    tick(collector, clock)
    assert state(collector)["sources"]["kafka"] == {
        "ok": True,
        "last_ok_seconds_ago": 0.0,
        "error": None,
    }
    assert collector.healthy(collector.kafka_state, within=10)[0]


def test_history_is_bounded(world):
    collector, clock, kafka, *_ = world
    kafka.commits["g"] = {(INTERACTIONS, 0): 0}
    for n in range(50):
        kafka.ends[(INTERACTIONS, 0)] = n
        tick(collector, clock)
    points = collector.settings.history_points
    assert points == 11
    assert len(collector.ends[(INTERACTIONS, 0)]) == points
    assert len(collector.rates[INTERACTIONS]) == points
    assert all(len(lag.observations) == points for lag in collector.lags.values())


def test_instances_silent_past_the_lookback_are_forgotten(world):
    collector, clock, kafka, *_ = world
    tick(collector, clock)
    now = datetime.fromtimestamp(clock.now, UTC)
    kafka.records = [heartbeat_record(0, "gone-1", service="recommender", at=now)]
    tick(collector, clock)
    assert [i["instance"] for i in state(collector)["overview"]["instances"]] == ["gone-1"]
    clock.now += collector.settings.dashboard_heartbeat_lookback_seconds + 1
    tick(collector, clock)
    assert state(collector)["overview"]["instances"] == []
