"""Served-list shaping: a freshness prior per kind and a per-tag diversity cap (pure logic).

The prior is subtracted, not multiplied: ``served = score - weight * spread * staleness``
with ``staleness = 1 - 2^(-age / half_life)`` (0 when published, towards 1 when old) and
``spread`` the standard deviation of the user's scores. Subtracting lowers every stale item,
negative scores included (a decay factor < 1 would raise those), and measuring the penalty
in the user's own score spread makes ``weight`` mean the same for every user and version,
whose raw ALS scores have no fixed scale: at most ``weight`` deviations, half that one
half-life after publication.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

import numpy as np

#: A candidate pool this many times k is tried first; it grows by this factor until the
#: capped list is full or no candidates are left.
POOL_GROWTH = 4


@dataclass(frozen=True)
class Shaping:
    """How served lists are shaped: per kind, the freshness half-life in seconds (kinds not
    named do not decay), the prior's weight in score deviations, and the most items of one
    tag in a recommended list (0: no cap)."""

    half_life_seconds: Mapping[str, float] = field(default_factory=dict)
    weight: float = 1.0
    max_per_tag: int = 0

    def __post_init__(self) -> None:
        if any(not h > 0 for h in self.half_life_seconds.values()):
            raise ValueError("freshness half-lives must be > 0")
        if self.weight < 0 or self.max_per_tag < 0:
            raise ValueError("the freshness weight and max_per_tag must be >= 0")


def freshened(
    scores: np.ndarray, published: np.ndarray, half_life: np.ndarray, now: float, weight: float
) -> np.ndarray:
    """``scores`` with the prior blended in (see the module docstring). ``published`` and
    ``half_life`` are per item, in epoch seconds and seconds; an infinite half-life (a kind
    that does not decay, or an item without ``published_at``) leaves the score as it is."""
    decaying = np.flatnonzero(np.isfinite(half_life))
    if weight <= 0 or not len(decaying):
        return scores
    served = np.array(scores, dtype=np.float64)
    finite = served[np.isfinite(served)]
    spread = float(finite.std()) if len(finite) > 1 else 0.0
    # A published-in-the-future item (clock skew) is fresh, not fresher than fresh.
    ages = np.maximum(now - published[decaying], 0.0)
    staleness = 1.0 - np.exp2(-ages / half_life[decaying])
    served[decaying] -= weight * (spread or 1.0) * staleness
    return served


def capped(
    candidates: Iterable[int], k: int, tags_of: Callable[[int], Iterable[str]], cap: int
) -> list[int]:
    """Greedily the first ``k`` candidates (best first) of which no tag is already held by
    ``cap`` chosen ones; an item without tags is never held back. ``cap`` 0: no cap."""
    chosen: list[int] = []
    held: Counter[str] = Counter()
    for index in candidates:
        if len(chosen) >= k:
            break
        tags = set(tags_of(index)) if cap > 0 else set()
        if any(held[tag] >= cap for tag in tags):
            continue
        held.update(tags)
        chosen.append(index)
    return chosen


def capped_top_k(
    ranked: Callable[[int], np.ndarray],
    k: int,
    tags_of: Callable[[int], Iterable[str]],
    cap: int,
) -> list[int]:
    """:func:`capped` over ``ranked(n)`` (the n best candidates, best first), asking for a
    larger pool until ``k`` are chosen or ``ranked`` has no more to give."""
    pool = k if cap <= 0 else POOL_GROWTH * k
    while True:
        candidates = ranked(pool)
        chosen = capped(candidates, k, tags_of, cap)
        if len(chosen) >= k or len(candidates) < pool:
            return chosen
        pool *= POOL_GROWTH
