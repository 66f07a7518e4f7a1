"""argparse value types: a bad value becomes argparse's one-line usage error."""

from __future__ import annotations

from datetime import datetime


def rate(text: str) -> float:
    value = float(text.removesuffix("/s"))
    if value < 0:
        raise ValueError("rate must be >= 0")
    return value


rate.__name__ = "rate (events per second, e.g. 500 or 500/s)"


def positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise ValueError("must be > 0")
    return value


positive_int.__name__ = "positive integer"


def aware_datetime(text: str) -> datetime:
    value = datetime.fromisoformat(text)
    if value.tzinfo is None:
        raise ValueError("needs a timezone")
    return value


aware_datetime.__name__ = "ISO 8601 time with a timezone (e.g. 2025-01-02T03:04:05Z)"
