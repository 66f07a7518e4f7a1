"""Events become records by the registry's rules: topic, prefix, key, headers."""

from __future__ import annotations

import base64
from datetime import UTC, datetime

import pytest

from shared.errors import InvalidEvent
from shared.events import EventCodec, InteractionEvent
from shared.events.models import HeartbeatEvent
from shared.kafka.records import CONTENT_TYPE, to_record

CODEC = EventCodec()


def interaction(**data) -> InteractionEvent:
    return InteractionEvent.create(
        {"user_id": "u-1", "item_id": "i-1", "action": "view", **data}, source="urn:test"
    )


def test_an_event_goes_to_its_types_topic_keyed_by_the_registry_field():
    record = to_record(interaction(), CODEC, prefix="staging.")
    assert record.topic == "staging.interactions"
    assert record.key == b"u-1"
    assert dict(record.headers) == {
        "content-type": CONTENT_TYPE,
        "ce_type": b"marquee.interaction.v1",
    }
    assert CODEC.decode(record.value, topic="interactions").data.item_id == "i-1"


def test_an_event_on_a_topic_that_does_not_carry_its_type_is_refused():
    with pytest.raises(InvalidEvent, match="carries"):
        to_record(interaction(), CODEC, topic="content-requests")


def test_a_dead_letter_keeps_the_original_key_bytes():
    from shared.events.deadletter import dead_letter_for

    class Message:
        topic, partition, offset = "t.interactions", 2, 41
        key, value = b"\xff\x00raw", b"{not json"

    letter = dead_letter_for("recommender", Message(), InvalidEvent("not JSON"))
    record = to_record(letter, EventCodec(max_bytes=512 * 1024), topic="interactions.dlq")
    assert record.topic == "interactions.dlq"
    assert record.key == b"\xff\x00raw"
    data = CODEC.decode(record.value, topic="interactions.dlq").data
    assert base64.b64decode(data.value_b64) == b"{not json" and "not JSON" in data.error
    assert (data.source_topic, data.partition, data.offset) == ("t.interactions", 2, 41)


def test_heartbeats_are_keyed_by_instance():
    beat = HeartbeatEvent.create(
        {
            "service": "probe",
            "instance": "probe-7",
            "status": "ok",
            "started_at": datetime(2025, 1, 1, tzinfo=UTC),
            "version": "0",
        },
        source="urn:test",
    )
    assert to_record(beat, CODEC).key == b"probe-7"
