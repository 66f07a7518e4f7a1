"""What the feedback consumer does with a batch, on an in-memory store (no broker, no DB)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from prometheus_client import CollectorRegistry

from services.feedback.consumer import FeedbackConsumer
from services.feedback.store import Written
from shared.errors import TransientError
from shared.events import EventCodec, ImpressionEvent, InteractionEvent
from shared.metrics import Metrics

CODEC = EventCodec()


@dataclass
class Message:
    value: bytes
    topic: str = "impressions"
    partition: int = 0
    offset: int = 0
    key: bytes | None = None


class MemoryStore:
    """Keyed like the tables: a row already there is not written again."""

    def __init__(self, fail_first: int = 0) -> None:
        self.impressions: dict[str, object] = {}
        self.interactions: dict[tuple[str, str], object] = {}
        self.fail_first = fail_first

    def write(self, impressions, interactions) -> Written:
        if self.fail_first:
            self.fail_first -= 1
            raise TransientError("database restarting")
        new = sum(self.impressions.setdefault(r.impression_id, r) is r for r in impressions)
        key = lambda r: (r.event_source, r.event_id)  # noqa: E731
        fresh = sum(self.interactions.setdefault(key(r), r) is r for r in interactions)
        return Written(new, fresh)


def consumer(store, letters):
    async def dead_letter(record, topic, error):
        letters.append((topic, str(error)))

    registry = CollectorRegistry()
    events = Metrics(registry).counter("marquee_feedback_events_total", "t", ("topic", "outcome"))
    return FeedbackConsumer(store, CODEC, dead_letter, events, max_retry_seconds=0.01), registry


def encoded(event) -> Message:
    return Message(CODEC.encode(event))


def shown() -> ImpressionEvent:
    return ImpressionEvent.create(
        {
            "impression_id": "imp-1",
            "user_id": "u",
            "items": [{"item_id": "a", "position": 1, "score": 1.0}],
            "strategy": "als",
        }
    )


def act(action: str, **extra) -> InteractionEvent:
    return InteractionEvent.create({"user_id": "u", "item_id": "a", "action": action, **extra})


def test_impressions_are_kept_once_and_bad_ones_dead_lettered():
    store, letters = MemoryStore(), []
    feedback, registry = consumer(store, letters)
    good = encoded(shown())
    asyncio.run(feedback.consume([good, good, Message(b"{oops")], "impressions"))
    assert list(store.impressions) == ["imp-1"] and store.impressions["imp-1"].slots == (
        (1, "a", 1.0, None),
    )
    assert [topic for topic, _ in letters] == ["impressions"]
    value = registry.get_sample_value
    assert (
        value("marquee_feedback_events_total", {"topic": "impressions", "outcome": "stored"}) == 1
    )
    assert (
        value("marquee_feedback_events_total", {"topic": "impressions", "outcome": "duplicate"})
        == 1
    )


def test_only_attributable_actions_are_kept_and_bad_interactions_left_to_the_recommender():
    store, letters = MemoryStore(), []
    feedback, registry = consumer(store, letters)
    batch = [
        encoded(act("click", impression_id="imp-1")),
        encoded(act("view")),
        encoded(act("dwell", dwell_seconds=3.0)),
        Message(b"{oops", topic="interactions"),
    ]
    asyncio.run(feedback.consume(batch, "interactions"))
    assert sorted(r.action for r in store.interactions.values()) == ["click", "dwell"]
    assert letters == []  # the recommender owns interactions.dlq
    assert (
        registry.get_sample_value(
            "marquee_feedback_events_total", {"topic": "interactions", "outcome": "ignored"}
        )
        == 1
    )


def test_a_failing_write_is_retried_until_it_succeeds_never_skipped():
    store = MemoryStore(fail_first=2)
    feedback, _ = consumer(store, [])
    asyncio.run(feedback.consume([encoded(act("click"))], "interactions"))
    assert len(store.interactions) == 1
