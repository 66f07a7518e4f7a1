"""Generated bad records, interleaved with valid ones, against the running services.

Hypothesis builds the records (one derandomized example, so a run repeats): mutations of a
valid CloudEvent (a required attribute dropped or of the wrong type, NUL and control
characters, a bad time, a bad extension name, unknown or oversized data, not JSON, not
UTF-8). Every bad record must reach its topic's DLQ with a reason, every valid one must be
processed exactly once, and the service must be ready at the end: nothing stalls it.
"""

from __future__ import annotations

import base64
import json
import sys
import time
from datetime import UTC, datetime

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from kafka import KafkaProducer
from sqlalchemy import text

from shared.errors import InvalidEvent
from shared.events import EventCodec
from shared.kafka.client import client_options
from tests.integration.kafka_helpers import read_all
from tests.integration.worker_helpers import get, service_worker

CODEC = EventCodec()
MAX_BYTES = 2048  # the services' MARQUEE_MAX_EVENT_BYTES here: "oversized" stays small
ONE_EXAMPLE = settings(
    max_examples=1,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.filter_too_much,
    ],
)

ATTRIBUTES = ("specversion", "id", "source", "type", "time", "data")
junk = st.one_of(
    st.none(),
    st.integers(),
    st.floats(allow_nan=False),
    st.booleans(),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)
control = st.sampled_from(["\x00", "\x01", "\n", "\x1f", "\x7f", "\x85"])
bad_times = st.sampled_from(
    ["1735689600", "2025-13-01T00:00:00Z", "2025-01-01", "yesterday", "2025-01-01T00:00:00"]
)


def envelope(kind: str, n: int) -> dict:
    data = (
        {"user_id": f"u{n % 7}", "item_id": f"i{n % 11}", "action": "click"}
        if kind == "interaction"
        else {"request_id": f"fuzz-{n}", "kind": "news", "prompt": f"Item {n}", "max_new_tokens": 1}
    )
    return {
        "specversion": "1.0",
        "id": f"fuzz-{kind}-{n}",
        "source": "urn:fuzz",
        "type": f"marquee.{'interaction' if kind == 'interaction' else 'content_request'}.v1",
        # Requests count their deadline from here: now, so the valid ones are generated.
        "time": datetime.now(UTC).isoformat(),
        "data": data,
    }


MUTATIONS = (
    "drop",
    "junk",
    "control",
    "time",
    "extension-name",
    "data-field",
    "oversized",
    "not-json",
    "not-utf8",
    "wrong-type",
)


@st.composite
def bad_record(draw, kind: str, i: int) -> bytes:
    """The ``i``-th bad record: the mutation and its target rotate with ``i`` (Hypothesis
    tries its simplest example first, so variety cannot be left to the draws); the values
    put in are drawn."""
    doc = envelope(kind, 1000 + i)
    fields = sorted(doc["data"])
    field = fields[i % len(fields)]
    mutation = MUTATIONS[i % len(MUTATIONS)]
    turn = i // len(MUTATIONS)
    if mutation == "drop":
        doc.pop(ATTRIBUTES[turn % len(ATTRIBUTES)])
    elif mutation == "junk":
        doc["data"][field] = draw(junk)
    elif mutation == "control":
        where = ("source", "subject", "data")[turn % 3]
        text_ = f"a{draw(control)}b"
        if where == "data":
            doc["data"]["user_id" if kind == "interaction" else "request_id"] = text_
        else:
            doc[where] = text_
    elif mutation == "time":
        doc["time"] = draw(bad_times)
    elif mutation == "extension-name":
        doc[("Trace", "my_ext", "a" * 21, "ext-1")[turn % 4]] = draw(st.text(max_size=5))
    elif mutation == "data-field":
        doc["data"][("mood", "userId", "extra")[turn % 3]] = draw(junk)
    elif mutation == "oversized":
        doc["subject"] = "s" * 200
        doc["data"]["item_id" if kind == "interaction" else "prompt"] = "x" * MAX_BYTES
    elif mutation == "wrong-type":
        doc["type"] = ("marquee.heartbeat.v1", "marquee.nope.v1", "x")[turn % 3]
    raw = json.dumps(doc).encode()
    if mutation == "not-json":
        raw = raw[: draw(st.integers(0, len(raw) - 1))]
    elif mutation == "not-utf8":
        raw = b"\xff\xfe" + raw
    return raw


def is_bad(raw: bytes, topic: str) -> bool:
    try:
        EventCodec(max_bytes=MAX_BYTES).decode(raw, topic=topic)
    except InvalidEvent:
        return True
    return False


def mixed(kind: str, topic: str, bad: int, good: int):
    """``bad`` bad records with a valid one after every few, in a fixed order."""
    records = st.tuples(
        *(bad_record(kind, i).filter(lambda raw: is_bad(raw, topic)) for i in range(bad))
    )
    return records.map(
        lambda bads: [
            *(
                item
                for n, raw in enumerate(bads)
                for item in (
                    [(raw, True)]
                    + ([(json.dumps(envelope(kind, n)).encode(), False)] if n < good else [])
                )
            )
        ]
    )


def send(settings_, topic: str, records: list[tuple[bytes, bool]]) -> None:
    producer = KafkaProducer(**client_options(settings_))
    for raw, _ in records:
        producer.send(f"{settings_.topic_prefix}{topic}", key=b"fuzz", value=raw)
    producer.flush()
    producer.close()


def assert_dead_lettered(settings_, topic: str, records: list[tuple[bytes, bool]]) -> None:
    """Every bad record is in ``topic``.dlq, its own bytes, with a reason; no good one is."""
    bad = [raw for raw, is_bad_ in records if is_bad_]
    letters = [
        EventCodec(max_bytes=512 * 1024).decode(r.value).data
        for r in read_all(settings_, f"{topic}.dlq", len(bad), timeout_s=30)
    ]
    assert sorted(base64.b64decode(letter.value_b64) for letter in letters) == sorted(bad)
    assert len(read_all(settings_, f"{topic}.dlq", len(bad) + 1, timeout_s=2)) == len(bad)
    assert all(letter.error.strip() and letter.error_class for letter in letters)


def wait_for(predicate, timeout: float = 60.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.3)
    return predicate()


LIMITS = {"MARQUEE_MAX_EVENT_BYTES": str(MAX_BYTES)}


@ONE_EXAMPLE
@given(records=mixed("interaction", "interactions", bad=60, good=20))
def test_generated_bad_interactions_never_stall_ingest(records, topics, engine, tmp_path):
    serve = [sys.executable, "-m", "shared.cli.main", "serve", "recommender"]
    with service_worker(topics, tmp_path, serve, wait_for="/livez", **LIMITS) as (_, port):
        send(topics, "interactions", records)
        good = sum(1 for _, is_bad_ in records if not is_bad_)

        def stored() -> int:
            with engine.connect() as conn:
                return conn.execute(text("SELECT count(*) FROM interactions")).scalar_one()

        assert wait_for(lambda: stored() == good), (stored(), good)
        assert_dead_lettered(topics, "interactions", records)
        checks = json.loads(get(port, "/readyz")[1])["checks"]
        # No model is trained here, so only ingest's own checks speak for it.
        assert checks["ingest"]["ok"] and checks["postgres"]["ok"], checks
        assert checks["kafka_assignment"]["ok"], checks
        assert checks["ingest_assignment"]["ok"], checks
        assert "6 " in checks["ingest_assignment"]["detail"], checks  # every partition


@ONE_EXAMPLE
@given(records=mixed("request", "content-requests", bad=40, good=6))
def test_generated_bad_requests_never_stall_the_generator(records, topics, engine, tmp_path):
    serve = [sys.executable, "-m", "shared.cli.main", "serve", "generator"]
    with service_worker(topics, tmp_path, serve, **LIMITS) as (_, port):
        send(topics, "content-requests", records)
        good = sum(1 for _, is_bad_ in records if not is_bad_)
        replies = read_all(topics, "content-generated", good, timeout_s=90)
        assert sorted(r.key for r in replies) == sorted(f"fuzz-{n}".encode() for n in range(good))
        assert_dead_lettered(topics, "content-requests", records)
        # Exactly one reply each: nothing more arrives.
        assert len(read_all(topics, "content-generated", good + 1, timeout_s=2)) == good
        assert get(port, "/readyz")[0] == 200


def test_the_generated_records_are_bad_in_many_ways():
    """The strategy's spread: the DLQ tests above see more than one kind of mistake."""
    reasons = set()

    @ONE_EXAMPLE
    @given(records=mixed("interaction", "interactions", bad=60, good=0))
    def collect(records):
        for raw, _ in records:
            try:
                EventCodec(max_bytes=MAX_BYTES).decode(raw, topic="interactions")
            except InvalidEvent as exc:
                reasons.add(str(exc).split(":")[0])

    collect()
    assert len(reasons) >= 8, reasons


pytestmark = pytest.mark.timeout(180)
