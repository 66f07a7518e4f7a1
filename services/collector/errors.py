"""The collector's errors (one root, classified like every Marquee error)."""

from __future__ import annotations

from shared.errors import MarqueeError


class CollectorError(MarqueeError):
    """Root of the collector's own errors."""


class RequestRefused(CollectorError):
    """The whole request is refused: ``status`` is its HTTP status, the message says why."""

    def __init__(self, status: int, reason: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(reason)
        self.status, self.reason, self.headers = status, reason, headers or {}
