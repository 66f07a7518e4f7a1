"""Feedback: impressions and the clicks they lead to, attributed and measured (CTR)."""

from shared.registry import ServiceSpec

from .settings import FeedbackSettings

SERVICE = ServiceSpec(
    name="feedback",
    summary="attributes clicks to the impressions served: CTR per version, strategy, position",
    settings=FeedbackSettings,
    build="services.feedback.app:build",
)
