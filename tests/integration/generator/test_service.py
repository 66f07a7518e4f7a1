"""The generator over the real broker and Postgres: one reply per request, even across a
crash; bad requests dead-lettered; content stored, and each complete piece published on
the catalog topic."""

from __future__ import annotations

import signal
import sys
import time
from collections import defaultdict
from datetime import UTC, datetime, timedelta

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from sqlalchemy import text

from services.generator.catalog import clean
from shared.events import EventCodec
from shared.events.models import ContentRequestEvent
from shared.kafka.client import client_options
from shared.kafka.offsets import end_offsets
from shared.kafka.publisher import Publisher
from shared.topics import full_name
from tests.integration.kafka_helpers import read_all
from tests.integration.worker_helpers import get, service_worker

SERVE = [sys.executable, "-m", "shared.cli.main", "serve", "generator"]
ENV = {"MARQUEE_GENERATOR_BATCH_SIZE": "4", "MARQUEE_KAFKA_SESSION_TIMEOUT_SECONDS": "6"}


def request(n: int, kind: str = "news", **extra) -> ContentRequestEvent:
    return ContentRequestEvent.create(
        {
            "request_id": f"req-{n}",
            "kind": kind,
            "prompt": f"City council approves budget number {n}",
            "max_new_tokens": 12,
            "temperature": 0,
            **extra,
        }
    )


def replies(settings, expected: int, timeout_s: float = 120) -> list:
    records = read_all(settings, "content-generated", expected, timeout_s=timeout_s)
    return [EventCodec().decode(r.value) for r in records]


@pytest.fixture
def generator(topics, engine, tmp_path):
    with service_worker(topics, tmp_path, SERVE, MARQUEE_GENERATOR_STREAM="1", **ENV) as (
        proc,
        port,
    ):
        yield proc, port, topics, engine


def test_every_request_gets_exactly_one_reply(generator):
    _, _, settings, engine = generator
    kinds = ["news", "script", "lyrics", "assistant", "news", "news"]
    with Publisher(settings) as pub:
        for n, kind in enumerate(kinds):
            # The assistant in its ungrounded mode: the grounded one is test_briefings.py's.
            pub.publish_sync(request(n, kind, grounded=kind != "assistant"))
    producer = KafkaProducer(**client_options(settings))
    producer.send(full_name("content-requests", settings.topic_prefix), b'{"nope": 1}', key=b"k")
    producer.flush()
    producer.close()

    got = replies(settings, len(kinds))
    assert sorted(e.data.request_id for e in got) == sorted(f"req-{n}" for n in range(len(kinds)))
    assert len(replies(settings, len(kinds) + 1, timeout_s=3)) == len(kinds)  # and no more
    for event in got:
        reply = event.data
        assert reply.status == "ok", reply.error
        assert reply.text and reply.completion_tokens > 0 and reply.prompt_tokens > 0
        assert reply.finish_reason in ("stop", "length") and reply.timings.total_seconds > 0
        assert event.id == reply.reply_id
    # The token stream: each request's chunks, in order, add up to its reply's text.
    chunks = defaultdict(list)
    for record in read_all(settings, "content-stream", 10_000, timeout_s=3):
        chunk = EventCodec().decode(record.value).data
        chunks[chunk.request_id].append((chunk.index, chunk.text))
    for event in got:
        pieces = sorted(chunks[event.data.request_id])
        assert [i for i, _ in pieces] == list(range(len(pieces)))
        assert "".join(t for _, t in pieces) == event.data.text

    letters = read_all(settings, "content-requests.dlq", 1)
    assert len(letters) == 1 and "type" in EventCodec().decode(letters[0].value).data.error

    with engine.connect() as conn:
        stored = dict(conn.execute(text("SELECT request_id, item_id FROM generated_content")).all())
        in_items = conn.execute(text("SELECT count(*) FROM items")).scalar_one()
    assert len(stored) == len(kinds)
    assert in_items == 0  # the catalog is the topic's: the generator writes no item rows

    # Each complete piece is an item on `catalog`, keyed by its id; assistant answers are
    # private.
    items = catalog_items(settings, 5)
    assert sorted(i.kind for i in items.values()) == ["lyrics", "news", "news", "news", "script"]
    by_request = {e.data.request_id: e for e in got}
    for key, item in items.items():
        reply = by_request[key.removeprefix("gen-")]
        assert item.item_id == key == reply.data.item_id
        assert item.tags == [item.kind] == [reply.data.kind]
        assert item.body == clean(reply.data.text)
        assert 0 < len(item.title) <= 120 and len(item.summary) <= 300
        assert item.published_at == reply.time
    assert by_request["req-3"].data.item_id is None  # the assistant's
    # Each row links its piece to the catalog by the id published there.
    assert {r: i for r, i in stored.items() if i} == {k.removeprefix("gen-"): k for k in items}
    assert stored["req-3"] is None

    # Asked again (a replay, a retrying client): the stored reply, identical, not a new one,
    # and the same item again (an upsert of the same id).
    with Publisher(settings) as pub:
        pub.publish_sync(request(0))
    again = replies(settings, len(kinds) + 1)
    first = [e for e in again if e.data.request_id == "req-0"]
    assert len(first) == 2 and first[0].model_dump() == first[1].model_dump()
    records = read_all(settings, "catalog", 6)
    copies = [r.value for r in records if r.key == b"gen-req-0"]
    assert len(records) == 6 and len(copies) == 2 and copies[0] == copies[1]


def catalog_items(settings, expected: int) -> dict:
    records = read_all(settings, "catalog", expected, timeout_s=30)
    return {r.key.decode(): EventCodec().decode(r.value, topic="catalog").data for r in records}


def test_a_worker_killed_mid_batch_answers_everything_once_restarted(topics, engine, tmp_path):
    count = 8
    with service_worker(topics, tmp_path, SERVE, **ENV) as (proc, _):
        with Publisher(topics) as pub:
            for n in range(count):
                pub.publish_sync(request(n, max_new_tokens=24))
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:  # kill once some, not all, are answered
            with engine.connect() as conn:
                done = conn.execute(text("SELECT count(*) FROM generated_content")).scalar_one()
            if done:
                break
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert 0 < done < count, "the kill should land mid-stream"

    with service_worker(topics, tmp_path, SERVE, **ENV):
        got = replies(topics, count, timeout_s=180)
        time.sleep(3)  # let any duplicate arrive
        got = replies(topics, count * 2, timeout_s=5)
    by_request = defaultdict(list)
    for event in got:
        by_request[event.data.request_id].append(event.model_dump())
    assert sorted(by_request) == sorted(f"req-{n}" for n in range(count))
    for request_id, copies in by_request.items():
        assert all(copy == copies[0] for copy in copies), f"{request_id}: replies differ"
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM generated_content")).scalar_one() == count


def committed(settings) -> dict[int, int]:
    """The generator group's committed offsets on content-requests, by partition (0 where
    none; read without joining the group)."""
    topic = full_name("content-requests", settings.topic_prefix)
    consumer = KafkaConsumer(
        **client_options(settings),
        group_id=f"{settings.topic_prefix}marquee-generator",
        enable_auto_commit=False,
    )
    try:
        return {
            p: consumer.committed(TopicPartition(topic, p)) or 0
            for p in consumer.partitions_for_topic(topic)
        }
    finally:
        consumer.close()


def test_copies_late_requests_and_nul_bytes_each_get_one_answer(generator):
    _, port, settings, engine = generator
    stale = datetime.now(UTC) - timedelta(seconds=30)
    with Publisher(settings) as pub:
        # Sent twice at once (a retrying client): the copy waits for the first one's reply.
        pub.publish_sync(request(1))
        pub.publish_sync(request(1))
        # Its deadline passed before the worker saw it.
        late = request(2, deadline_seconds=1).model_copy(update={"time": stale})
        pub.publish_sync(late)
        # Postgres text cannot hold NUL: stored as U+FFFD, answered like any other.
        pub.publish_sync(request(3, prompt="Breaking\x00news: the bridge reopens"))

    replies(settings, 3, timeout_s=120)
    got = replies(settings, 4, timeout_s=3)  # the copy's own reply, if it got one
    by_request = defaultdict(list)
    for event in got:
        by_request[event.data.request_id].append(event)
    assert sorted(by_request) == ["req-1", "req-2", "req-3"]
    assert all(e.model_dump() == by_request["req-1"][0].model_dump() for e in by_request["req-1"])
    (late_reply,) = [e.data for e in by_request["req-2"]]
    assert late_reply.status == "error" and "deadline" in late_reply.error
    (nul_reply,) = [e.data for e in by_request["req-3"]]
    assert nul_reply.status == "ok" and nul_reply.text

    # Generated once: one run of chunks for req-1, not two interleaved.
    indices = [
        chunk.index
        for record in read_all(settings, "content-stream", 10_000, timeout_s=3)
        if (chunk := EventCodec().decode(record.value).data).request_id == "req-1"
    ]
    assert sorted(indices) == list(range(len(indices))) and indices
    with engine.connect() as conn:
        prompt = conn.execute(
            text("SELECT prompt FROM generated_content WHERE request_id = 'req-3'")
        ).scalar_one()
    assert "\x00" not in prompt and "Breaking\ufffdnews" in prompt

    # Every request acked, the copy included: the group commits up to the end.
    ends = end_offsets(settings, "content-requests")
    deadline = time.monotonic() + 30
    while committed(settings) != ends and time.monotonic() < deadline:
        time.sleep(0.5)
    assert committed(settings) == ends

    status, body = get(port, "/metrics")
    assert status == 200
    assert b'marquee_generator_replies_total{status="error"} 1.0' in body
    assert get(port, "/readyz")[0] == 200
