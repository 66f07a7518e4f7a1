"""argparse value types: a bad value becomes argparse's one-line usage error."""

from __future__ import annotations


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
