"""Valid sample payloads for every event type, shared by the event and schema tests."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

STARTED = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)

#: One valid ``data`` payload per CloudEvents type, each exercising its optional fields.
SAMPLE_DATA: dict[str, dict] = {
    "marquee.item.v1": {
        "item_id": "article-1",
        "kind": "article",
        "title": "The harbour reopens",
        "summary": "Ferries run again after the storm.",
        "body": "The harbour reopened on Monday.\n\tFerries run hourly.",
        "tags": ["harbour", "weather"],
        "language": "en",
        "published_at": datetime(2026, 11, 30, 8, tzinfo=UTC),
        "expires_at": datetime(2026, 12, 30, 8, tzinfo=UTC),
        "hidden": False,
        "url": "https://news.example/harbour",
    },
    "marquee.interaction.v1": {
        "user_id": "u-1",
        "item_id": "i-1",
        "action": "dwell",
        "dwell_seconds": 12.5,
        "rating": 4.0,
        "impression_id": "imp-1",
    },
    "marquee.impression.v1": {
        "impression_id": "imp-1",
        "user_id": "u-1",
        "items": [
            {"item_id": "i-1", "position": 1, "score": 0.9},
            {"item_id": "i-2", "position": 2, "score": -0.5},
        ],
        "strategy": "als",
        "model_version": 3,
        "surface": "home",
        "experiment": "reranker-2026-12",
        "arm": "control",
    },
    "marquee.content_request.v1": {
        "request_id": "r-1",
        "kind": "news",
        "prompt": "Write about the harbour.",
        "max_new_tokens": 64,
        "temperature": 0.5,
        "top_k": 40,
        "top_p": 0.9,
        "repetition_penalty": 1.2,
        "seed": 7,
        "stop": ["\n\n"],
        "deadline_seconds": 30.0,
        "user_id": "u-1",
    },
    "marquee.generated_content.v1": {
        "request_id": "r-1",
        "reply_id": "p-1",
        "status": "ok",
        "kind": "news",
        "text": "The harbour was quiet.",
        "model": "smollm2-135m",
        "prompt_tokens": 12,
        "completion_tokens": 6,
        "finish_reason": "stop",
        "timings": {"queue_seconds": 0.1, "first_token_seconds": 0.2, "total_seconds": 1.5},
        "item_id": "gen-r-1",
    },
    "marquee.content_chunk.v1": {"request_id": "r-1", "index": 0, "text": "The council"},
    "marquee.recommendation_request.v1": {
        "request_id": "r-2",
        "user_id": "u-1",
        "k": 5,
        "exclude_seen": False,
        "kind": "news",
    },
    "marquee.recommendations.v1": {
        "request_id": "r-2",
        "user_id": "u-1",
        "strategy": "als",
        "model_version": 3,
        "items": [{"item_id": "i-1", "score": 0.9}, {"item_id": "i-2", "score": -0.5}],
        "impression_id": "imp-1",
    },
    "marquee.heartbeat.v1": {
        "service": "recommender",
        "instance": "rec-0",
        "status": "ok",
        "started_at": STARTED,
        "version": "0.1.0",
        "counters": {"consumed": 10.0},
        "detail": "all good",
    },
    "marquee.dead_letter.v1": {
        "source_topic": "interactions",
        "partition": 0,
        "offset": 42,
        "key_b64": "dS0x",
        "value_b64": "e30=",
        "error": "data.user_id: field required",
        "error_class": "InvalidEvent",
        "service": "recommender",
        "failed_at": STARTED,
    },
}


@pytest.fixture
def sample_event():
    """``sample_event(event_type)`` -> a fresh, valid envelope of that type."""
    from shared.events import EVENT_TYPES

    def make(event_type: str, **envelope):
        envelope.setdefault("source", "urn:marquee:test")
        return EVENT_TYPES[event_type].create(SAMPLE_DATA[event_type], **envelope)

    return make
