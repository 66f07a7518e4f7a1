"""The recommender's ingest against the real broker and Postgres: idempotent, and bad
input goes to the DLQ with its reason while the good input after it is stored."""

from __future__ import annotations

import json
import signal
import sys
import time

from kafka import KafkaProducer
from sqlalchemy import text

from shared.events import EventCodec, HeartbeatEvent, InteractionEvent
from shared.kafka.client import client_options
from shared.kafka.publisher import Publisher
from tests.integration.kafka_helpers import read_all
from tests.integration.stack_helpers import run_stack_script
from tests.integration.worker_helpers import get, service_worker

SERVE = [sys.executable, "-m", "shared.cli.main", "serve", "recommender"]
LIVE = {"wait_for": "/livez"}  # no model is trained here: the worker ingests, not serves


def interaction(n: int, user: str, action: str = "click") -> InteractionEvent:
    return InteractionEvent.create(
        {"user_id": user, "item_id": f"item-{n % 7}", "action": action},
        source="urn:test",
        id=f"ev-{n}",
    )


def without(doc: dict, key: str) -> dict:
    return {k: v for k, v in doc.items() if k != key}


def wait_for(predicate, timeout: float = 60.0, every: float = 0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    return predicate()


def count(engine, table: str) -> int:
    with engine.connect() as conn:
        return conn.execute(text(f"SELECT count(*) FROM {table}")).scalar_one()


def test_redelivered_events_count_once(engine, topics, tmp_path):
    events = [interaction(n, f"u{n % 5}") for n in range(50)]
    with Publisher(topics) as pub:
        pub.publish_many(events)
        pub.publish_many(events[:10])  # the same events again (an at-least-once redelivery)
    with service_worker(topics, tmp_path, SERVE, **LIVE):
        assert wait_for(lambda: count(engine, "interactions") == 50)
        time.sleep(1.5)  # the duplicates were consumed too, and added nothing
        assert count(engine, "interactions") == 50
        with engine.connect() as conn:
            total, pairs = conn.execute(
                text("SELECT sum(events), sum(confidence) FROM user_item")
            ).one()
        assert (total, pairs) == (50, 100.0)  # 50 clicks of weight 2
        assert count(engine, "users") == 5
        assert count(engine, "items") == 7


def test_bad_input_goes_to_the_dlq_and_consumption_goes_on(engine, topics, tmp_path):
    good = interaction(1, "u1")
    raw_good = json.loads(good.model_dump_json())
    wrong_type = raw_good | {"data": raw_good["data"] | {"user_id": 42}}
    unknown_field = raw_good | {"data": raw_good["data"] | {"mood": "happy"}}
    unknown_type = raw_good | {"type": "marquee.telepathy.v1"}
    oversized = raw_good | {"data": raw_good["data"] | {"item_id": "x" * 100}, "subject": "y" * 200}
    heartbeat = HeartbeatEvent.create(
        {"service": "s", "instance": "i", "status": "ok", "started_at": good.time, "version": "1"}
    )
    bad = [
        (b"{not json", "not a JSON event object"),
        (json.dumps(wrong_type).encode(), "data.user_id: Input should be a valid string"),
        (json.dumps(unknown_field).encode(), "data.mood: unknown field"),
        (json.dumps(unknown_type).encode(), "unknown event type 'marquee.telepathy.v1'"),
        (json.dumps(oversized).encode(), "the limit is 600"),
        (EventCodec().encode(heartbeat), "does not belong on the interactions topic"),
        # Found by fuzzing: a NUL in source passed validation and the insert then failed
        # forever, stalling every partition. Now refused with the reason.
        (json.dumps(raw_good | {"source": "urn:app\x00"}).encode(), "source:"),
        (json.dumps(without(raw_good, "specversion")).encode(), "specversion: field required"),
        (json.dumps(raw_good | {"time": "1735689600"}).encode(), "time: must be an RFC 3339"),
    ]
    # A CloudEvents extension attribute is allowed by the spec: stored like any event.
    extended = raw_good | {"id": "e-extended", "traceparent": "00-ab-cd-01", "seq": 3}
    producer = KafkaProducer(**client_options(topics))
    for value, _ in bad:
        producer.send(f"{topics.topic_prefix}interactions", key=b"u1", value=value)
    producer.send(f"{topics.topic_prefix}interactions", key=b"u1", value=EventCodec().encode(good))
    producer.send(
        f"{topics.topic_prefix}interactions", key=b"u1", value=json.dumps(extended).encode()
    )
    producer.flush()
    producer.close()

    with service_worker(topics, tmp_path, SERVE, **LIVE, MARQUEE_MAX_EVENT_BYTES="600") as (
        _,
        port,
    ):
        assert wait_for(lambda: count(engine, "interactions") == 2)
        letters = [
            EventCodec().decode(r.value) for r in read_all(topics, "interactions.dlq", len(bad))
        ]
        checks = json.loads(get(port, "/readyz")[1])["checks"]
        assert checks["ingest"]["ok"], checks  # nothing is stuck retrying
    assert len(letters) == len(bad)
    by_offset = {letter.data.offset: letter.data for letter in letters}
    for offset, (value, reason) in enumerate(bad):
        letter = by_offset[offset]
        assert reason in letter.error, (reason, letter.error)
        assert letter.source_topic == f"{topics.topic_prefix}interactions"
        import base64

        assert base64.b64decode(letter.value_b64) == value


def test_sigkill_mid_stream_loses_and_double_counts_nothing(engine, topics, tmp_path):
    total = 3000
    with Publisher(topics) as pub:
        pub.publish_many(interaction(n, f"u{n % 40}", "view") for n in range(total))
    # The restarted worker takes the partitions once the killed one's session expires.
    small_batches = {
        "MARQUEE_RECOMMENDER_INGEST_BATCH_SIZE": "20",
        "MARQUEE_KAFKA_SESSION_TIMEOUT_SECONDS": "6",
    }
    with service_worker(topics, tmp_path, SERVE, **LIVE, **small_batches) as (proc, _):
        assert wait_for(lambda: count(engine, "interactions") > 0, every=0.02)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    partial = count(engine, "interactions")
    assert 0 < partial < total, "the worker finished before the kill; raise the event count"
    with service_worker(topics, tmp_path, SERVE, **LIVE, **small_batches):
        assert wait_for(lambda: count(engine, "interactions") == total, timeout=120)
        time.sleep(1.5)
    with engine.connect() as conn:
        events, confidence = conn.execute(
            text("SELECT sum(events), sum(confidence) FROM user_item")
        ).one()
    assert count(engine, "interactions") == total
    assert (events, confidence) == (total, float(total))


def test_postgres_restart_while_events_flow_loses_nothing(engine, topics, tmp_path):
    first, second = 300, 300
    with service_worker(topics, tmp_path, SERVE, **LIVE) as (proc, _):
        with Publisher(topics) as pub:
            pub.publish_many(interaction(n, f"u{n % 9}") for n in range(first))
        assert wait_for(lambda: count(engine, "interactions") == first)
        engine.dispose()
        assert run_stack_script("postgres/postgres.sh", "stop").returncode == 0
        with Publisher(topics) as pub:  # arrives while the database is down
            pub.publish_many(interaction(n, f"u{n % 9}") for n in range(first, first + second))
        time.sleep(3)  # the worker is failing and retrying now
        assert proc.poll() is None
        assert run_stack_script("postgres/postgres.sh", "start").returncode == 0
        assert wait_for(lambda: count(engine, "interactions") == first + second, timeout=90)
        assert proc.poll() is None, "the worker recovered without a restart"
    with engine.connect() as conn:
        assert (
            conn.execute(text("SELECT sum(events) FROM user_item")).scalar_one() == first + second
        )


def test_broker_restart_while_events_flow_loses_and_double_counts_nothing(engine, topics, tmp_path):
    first, second = 300, 300
    with service_worker(topics, tmp_path, SERVE, **LIVE) as (proc, _):
        with Publisher(topics) as pub:
            pub.publish_many(interaction(n, f"u{n % 9}") for n in range(first))
        assert wait_for(lambda: count(engine, "interactions") == first)
        assert run_stack_script("kafka/kafka.sh", "stop").returncode == 0
        time.sleep(3)  # the ingest consumer has lost its broker and keeps trying
        assert proc.poll() is None
        assert run_stack_script("kafka/kafka.sh", "start").returncode == 0
        with Publisher(topics) as pub:
            pub.publish_many(interaction(n, f"u{n % 9}") for n in range(first, first + second))
        assert wait_for(lambda: count(engine, "interactions") == first + second, timeout=120)
        assert proc.poll() is None, "the worker recovered without a restart"
        time.sleep(1.5)  # anything read twice after the restart would have landed by now
    with engine.connect() as conn:
        events = conn.execute(text("SELECT sum(events) FROM user_item")).scalar_one()
    assert count(engine, "interactions") == first + second == events
