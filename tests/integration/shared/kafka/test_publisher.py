"""Publisher -> real broker -> consumer, for every event type."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest

from shared.errors import DeliveryError, InvalidEvent
from shared.events import EVENT_TYPES, EventCodec
from shared.events import models as m
from shared.kafka.publisher import Publisher
from shared.topics import TOPIC_FOR_TYPE, TOPICS, full_name
from tests.integration.kafka_helpers import read_all, record_count

NOW = datetime.now(UTC)
SAMPLES = {
    "marquee.interaction.v1": m.Interaction(user_id="u1", item_id="i1", action="click"),
    "marquee.item.v1": m.Item(
        item_id="article-1", kind="article", title="The harbour reopens", published_at=NOW
    ),
    "marquee.content_request.v1": m.ContentRequest(request_id="r1", kind="news", prompt="Write"),
    "marquee.generated_content.v1": m.GeneratedContent(
        request_id="r1", reply_id="rep1", status="ok", kind="news", text="Hello", model="tiny"
    ),
    "marquee.content_chunk.v1": m.ContentChunk(request_id="r1", index=0, text="The council"),
    "marquee.recommendation_request.v1": m.RecommendationRequest(request_id="q1", user_id="u2"),
    "marquee.recommendations.v1": m.Recommendations(
        request_id="q1",
        user_id="u2",
        strategy="als",
        items=[m.ScoredItem(item_id="i9", score=0.5)],
    ),
    "marquee.impression.v1": m.Impression(
        impression_id="imp1",
        user_id="u2",
        items=[m.ShownItem(item_id="i9", position=1, score=0.5)],
        strategy="als",
        model_version=3,
        surface="home",
    ),
    "marquee.heartbeat.v1": m.Heartbeat(
        service="recommender", instance="rec-1", status="ok", started_at=NOW, version="0.1"
    ),
    "marquee.dead_letter.v1": m.DeadLetter(
        source_topic="interactions",
        partition=0,
        offset=7,
        key_b64="dTE=",  # the original record's key, b"u1"
        value_b64="e30=",
        error="bad",
        error_class="InvalidEvent",
        service="recommender",
        failed_at=NOW,
    ),
}


def test_samples_cover_every_event_type():
    assert set(SAMPLES) == set(EVENT_TYPES)


@pytest.mark.parametrize("event_type", sorted(EVENT_TYPES))
def test_round_trip_with_registry_key_and_headers(topics, event_type):
    settings = topics
    cls = EVENT_TYPES[event_type]
    event = cls.create(SAMPLES[event_type], id=str(uuid.uuid4()))
    base = TOPIC_FOR_TYPE.get(event_type, "interactions.dlq")
    spec = TOPICS[base]

    with Publisher(settings) as pub:
        meta = pub.publish_sync(event, topic=base)
    assert meta.topic == full_name(base, settings.topic_prefix)

    (record,) = read_all(settings, base, expected=1)
    if spec.key_is_base64:  # a dead letter keeps the original record's key
        assert record.key == b"u1"
    else:
        assert record.key == str(getattr(event.data, spec.key_field)).encode()
    headers = dict(record.headers)
    assert headers["ce_type"] == event_type.encode()
    assert headers["content-type"].startswith(b"application/cloudevents+json")
    decoded = EventCodec().decode(record.value)
    assert decoded == event


def test_same_key_lands_on_one_partition(topics):
    settings = topics
    with Publisher(settings) as pub:
        parts = {
            pub.publish_sync(
                m_event := EVENT_TYPES["marquee.interaction.v1"].create(
                    {"user_id": "same-user", "item_id": f"i{n}", "action": "view"}
                )
            ).partition
            for n in range(20)
        }
    assert len(parts) == 1, m_event


def test_invalid_event_never_reaches_kafka(topics):
    settings = topics
    cls = EVENT_TYPES["marquee.interaction.v1"]
    future = cls.create(
        {"user_id": "u", "item_id": "i", "action": "view"},
        time=datetime(2100, 1, 1, tzinfo=UTC),
    )
    with Publisher(settings) as pub:
        with pytest.raises(InvalidEvent, match="in the future"):
            pub.publish(future)
        with pytest.raises(
            InvalidEvent, match="carries marquee.content_request.v1, not 'marquee.interaction.v1'"
        ):
            pub.publish(future, topic="content-requests")
    small = Publisher(settings.model_copy(update={"max_event_bytes": 600}))
    try:
        big = EVENT_TYPES["marquee.content_request.v1"].create(
            {"request_id": "r", "kind": "news", "prompt": "x" * 1000}
        )
        with pytest.raises(InvalidEvent, match="the limit is 600"):
            small.publish(big)
    finally:
        small.close()
    assert record_count(settings, "interactions") == 0
    assert record_count(settings, "content-requests") == 0


def test_missing_topic_is_a_clear_delivery_error(settings):
    # `settings` alone: this test's topics were never created.
    event = EVENT_TYPES["marquee.interaction.v1"].create(
        {"user_id": "u", "item_id": "i", "action": "view"}
    )
    with Publisher(settings) as pub, pytest.raises(DeliveryError, match="marquee topics ensure"):
        pub.publish(event)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"user_id": "u", "item_id": "i", "action": "blink"}, "data.action"),
        ({"user_id": 7, "item_id": "i", "action": "view"}, "data.user_id"),
        ({"user_id": "u", "action": "view"}, "data.item_id: field required"),
    ],
)
def test_bad_events_are_refused_before_kafka(topics, data, message):
    with Publisher(topics) as pub, pytest.raises(InvalidEvent, match=message):
        pub.publish(EVENT_TYPES["marquee.interaction.v1"].create(data))
    assert record_count(topics, "interactions") == 0


def test_publish_many_confirms_the_good_events_and_names_the_bad_one(topics):
    cls = EVENT_TYPES["marquee.interaction.v1"]
    good = [cls.create({"user_id": f"u{n}", "item_id": "i", "action": "view"}) for n in range(3)]
    bad = cls.create(
        {"user_id": "u", "item_id": "i", "action": "view"}, time=datetime(2100, 1, 1, tzinfo=UTC)
    )
    with Publisher(topics) as pub:
        report = pub.publish_many([good[0], bad, good[1], good[2]])
    assert [o.status for o in report.outcomes] == ["accepted", "rejected", "accepted", "accepted"]
    assert report.accepted == 3
    (problem,) = report.problems()
    assert (problem.index, problem.id) == (1, bad.id) and "in the future" in problem.reason
    # Confirmed before publish_many returned: on the topic, in any reader's view.
    assert record_count(topics, "interactions") == 3
