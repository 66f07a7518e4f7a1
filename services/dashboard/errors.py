"""The dashboard's errors (one root, classified like every Marquee error)."""

from __future__ import annotations

from shared.errors import MarqueeError


class DashboardError(MarqueeError):
    """Root of the dashboard's own errors."""


class RecommenderUnavailable(DashboardError):
    """The recommender's API did not answer, or answered with an error; the page says which."""

    retriable = True


class FeedbackUnavailable(DashboardError):
    """The feedback service's /metrics/ctr did not answer, or answered with an error."""

    retriable = True
