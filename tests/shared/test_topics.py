"""The topic registry is consistent with itself and with the event models."""

from __future__ import annotations

import pytest

from shared.events import EVENT_TYPES
from shared.topics import TOPIC_FOR_TYPE, TOPICS, base_name, full_name, spec

DEAD_LETTER = "marquee.dead_letter.v1"


def data_fields(event_type: str) -> set[str]:
    return set(EVENT_TYPES[event_type].model_fields["data"].annotation.model_fields)


@pytest.mark.parametrize("name", [n for n, s in TOPICS.items() if s.has_dlq])
def test_every_consumed_topic_has_a_dlq(name):
    dlq = TOPICS[f"{name}.dlq"]
    assert dlq.event_types == (DEAD_LETTER,)
    assert not dlq.has_dlq  # no DLQ of a DLQ


def test_every_dlq_belongs_to_a_topic_that_wants_one():
    for name in TOPICS:
        if name.endswith(".dlq"):
            assert TOPICS[name.removesuffix(".dlq")].has_dlq, name


@pytest.mark.parametrize("name", sorted(TOPICS))
def test_key_field_exists_on_every_event_type_of_the_topic(name):
    topic = TOPICS[name]
    assert topic.event_types, f"{name} carries no event type"
    for event_type in topic.event_types:
        assert event_type in EVENT_TYPES, f"{name}: unknown event type {event_type}"
        assert topic.key_field in data_fields(event_type), (
            f"{name}: {event_type}.data has no {topic.key_field}"
        )


@pytest.mark.parametrize("name", sorted(TOPICS))
def test_spec_is_well_formed(name):
    topic = TOPICS[name]
    assert topic.name == name
    assert topic.partitions >= 1
    # Only a compacted topic keeps records for ever (-1): there, the latest per key stays.
    assert topic.retention_ms > 0 or (
        topic.retention_ms == -1 and topic.cleanup_policy == "compact"
    )
    assert topic.configs()["retention.ms"] == str(topic.retention_ms)
    assert topic.configs()["cleanup.policy"] == topic.cleanup_policy


def test_topic_for_type_covers_every_published_type():
    assert set(TOPIC_FOR_TYPE) == set(EVENT_TYPES) - {DEAD_LETTER}
    for event_type, name in TOPIC_FOR_TYPE.items():
        assert event_type in TOPICS[name].event_types
        assert not name.endswith(".dlq")


def test_full_and_base_name_with_a_prefix():
    assert full_name("interactions") == "interactions"
    assert full_name("interactions", "t1a2.") == "t1a2.interactions"
    assert full_name("interactions.dlq", "t1a2.") == "t1a2.interactions.dlq"
    for name in TOPICS:
        assert base_name(full_name(name, "dev-"), "dev-") == name


def test_base_name_strips_only_a_leading_prefix():
    assert base_name("recommendations", "") == "recommendations"
    with pytest.raises(KeyError):
        base_name("dev.recommendations", "prod.")


@pytest.mark.parametrize("call", [spec, full_name, base_name, lambda n: full_name(n, "p.")])
def test_unknown_topic_raises_key_error_listing_known_names(call):
    with pytest.raises(KeyError) as info:
        call("clicks")
    message = str(info.value)
    assert "unknown topic 'clicks'" in message
    for name in TOPICS:
        assert name in message
