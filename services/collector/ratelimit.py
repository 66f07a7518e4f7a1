"""Per-app token buckets (pure; the clock is injected).

Each app may send ``rate`` events a second on average and ``burst`` at once. The buckets
live in this process: with N collector instances behind a load balancer an app gets up to
N times the rate. That is the documented contract (docs/collector.md); a shared limit would
need a shared store on every request's path.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class TokenBucket:
    rate: float
    burst: float
    tokens: float
    updated: float

    def take(self, count: float, now: float) -> float:
        """Take ``count`` tokens: 0.0 when granted, else the seconds until they would be."""
        self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        if count <= self.tokens:
            self.tokens -= count
            return 0.0
        return (count - self.tokens) / self.rate


class RateLimiter:
    """One :class:`TokenBucket` per app name, created full on the app's first request."""

    def __init__(
        self, rate: float, burst: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("the rate must be positive and the burst at least 1")
        self.rate, self.burst, self._clock = rate, burst, clock
        # Keyed by app name: bounded by the apps that authenticated, never by callers.
        self._buckets: dict[str, TokenBucket] = {}

    def take(self, app: str, count: int = 1) -> float:
        """0.0 when ``app`` may send ``count`` events now, else the seconds to wait."""
        now = self._clock()
        bucket = self._buckets.get(app)
        if bucket is None:
            bucket = self._buckets[app] = TokenBucket(self.rate, self.burst, self.burst, now)
        return bucket.take(count, now)


def retry_after(seconds: float) -> str:
    """``Retry-After`` takes whole seconds: round up, and never say 0 (retry at once)."""
    return str(max(1, math.ceil(seconds)))
