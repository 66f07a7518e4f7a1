"""The feedback service's settings: the shared ones plus its own (prefix ``MARQUEE_``)."""

from __future__ import annotations

from pydantic import Field

from shared.config import Settings


class FeedbackSettings(Settings):
    #: Each service has its own port (recommender 6066 ... collector 6069, feedback 6071).
    http_port: int = Field(default=6071, ge=1, le=65535)
    #: A click, like or dwell counts for an impression it names if it happens at most this
    #: long after the list was served; later (or naming no impression) it is organic.
    feedback_attribution_window_seconds: float = Field(default=1800.0, gt=0, le=7 * 86_400)
    #: How much earlier than its impression an interaction may be stamped and still count
    #: (the reader's clock and the recommender's are not the same clock).
    feedback_clock_skew_seconds: float = Field(default=5.0, ge=0, le=3600)
    #: A consumed batch closes at this many events or after this long.
    feedback_batch_size: int = Field(default=500, ge=1, le=50_000)
    feedback_batch_seconds: float = Field(default=0.1, gt=0, le=60)
    #: The sliding window the Prometheus series cover, and how often they are recomputed.
    feedback_metrics_window_seconds: int = Field(default=3600, ge=60, le=30 * 86_400)
    feedback_metrics_refresh_seconds: float = Field(default=15.0, ge=1, le=3600)
