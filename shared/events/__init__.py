"""Event contracts: CloudEvents envelopes, versioned payloads, the validating codec."""

from .codec import EventCodec
from .envelope import DEFAULT_SOURCE, Envelope
from .models import (
    EVENT_TYPES,
    ContentRequest,
    ContentRequestEvent,
    DeadLetter,
    DeadLetterEvent,
    GeneratedContent,
    GeneratedContentEvent,
    GenerationTimings,
    Heartbeat,
    HeartbeatEvent,
    Interaction,
    InteractionEvent,
    RecommendationRequest,
    RecommendationRequestEvent,
    Recommendations,
    RecommendationsEvent,
    ScoredItem,
)

__all__ = [
    "DEFAULT_SOURCE",
    "EVENT_TYPES",
    "ContentRequest",
    "ContentRequestEvent",
    "DeadLetter",
    "DeadLetterEvent",
    "Envelope",
    "EventCodec",
    "GeneratedContent",
    "GeneratedContentEvent",
    "GenerationTimings",
    "Heartbeat",
    "HeartbeatEvent",
    "Interaction",
    "InteractionEvent",
    "RecommendationRequest",
    "RecommendationRequestEvent",
    "Recommendations",
    "RecommendationsEvent",
    "ScoredItem",
]
