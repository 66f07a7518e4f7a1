"""Token buckets per app: the burst passes, then the rate; the wait is told in whole seconds."""

from __future__ import annotations

import pytest

from services.collector.ratelimit import RateLimiter, retry_after


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_the_burst_passes_then_the_rate_refills():
    clock = Clock()
    limiter = RateLimiter(rate=10, burst=20, clock=clock)
    assert limiter.take("web", 20) == 0.0
    assert limiter.take("web", 1) == pytest.approx(0.1)
    clock.now += 0.5  # five tokens back
    assert limiter.take("web", 5) == 0.0
    assert limiter.take("web", 10) == pytest.approx(1.0)


def test_a_refused_request_takes_nothing_and_apps_have_their_own_buckets():
    clock = Clock()
    limiter = RateLimiter(rate=1, burst=5, clock=clock)
    assert limiter.take("web", 5) == 0.0
    assert limiter.take("web", 3) == pytest.approx(3.0)
    clock.now += 3
    assert limiter.take("web", 3) == 0.0  # the refused take did not dig a hole
    assert limiter.take("mobile", 5) == 0.0


def test_tokens_never_exceed_the_burst():
    clock = Clock()
    limiter = RateLimiter(rate=100, burst=10, clock=clock)
    limiter.take("web", 1)
    clock.now += 3600
    assert limiter.take("web", 10) == 0.0 and limiter.take("web", 1) > 0


def test_retry_after_is_whole_seconds_and_never_zero():
    assert retry_after(0.01) == "1" and retry_after(1.2) == "2" and retry_after(3.0) == "3"


def test_nonsense_limits_are_refused():
    with pytest.raises(ValueError):
        RateLimiter(rate=0, burst=10)
