"""Small numeric helpers for the panels (pure: no I/O)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any


def percentile(values: Sequence[float], q: float) -> float | None:
    """The ``q``-th percentile (0-100) with linear interpolation between ranks; None if empty."""
    if not 0 <= q <= 100:
        raise ValueError(f"percentile must be within 0..100, got {q}")
    ordered = sorted(v for v in values if math.isfinite(v))
    if not ordered:
        return None
    rank = (len(ordered) - 1) * q / 100
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def summary(values: Sequence[float]) -> dict[str, float | int | None]:
    return {
        "n": len(values),
        "p50": percentile(values, 50),
        "p95": percentile(values, 95),
        "p99": percentile(values, 99),
    }


def generation_numbers(
    completion_tokens: int | None, timings: Mapping[str, Any]
) -> dict[str, float | None]:
    """Time to first token, decode speed and latency of one generated piece.

    Tokens per second is the decode rate: the tokens after the first over the time after the
    first (prefill and queueing excluded, so batch size and prompt length don't blur it);
    without a first-token time, all tokens over the total time.
    """
    total = _number(timings.get("total_seconds"))
    first = _number(timings.get("first_token_seconds"))
    tokens = completion_tokens or 0
    speed = None
    if first is not None and total is not None and total > first and tokens > 1:
        speed = (tokens - 1) / (total - first)
    elif total and tokens:
        speed = tokens / total
    return {
        "ttft_seconds": first,
        "tokens_per_second": speed,
        "latency_seconds": total,
        "queue_seconds": _number(timings.get("queue_seconds")),
    }


def rate(before: tuple[float, int], after: tuple[float, int]) -> float:
    """Events per second between two ``(time, total offset)`` samples; 0 when offsets went
    down (a topic was recreated) or no time passed."""
    (t0, n0), (t1, n1) = before, after
    if t1 <= t0 or n1 < n0:
        return 0.0
    return (n1 - n0) / (t1 - t0)


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None
