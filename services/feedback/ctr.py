"""Click-through rates with 95% Wilson intervals, and the bounded labels they are exported by.

The unit is the slot: one item shown at one position of one impression. A slot is clicked
when at least one attributed click names it, so CTR = clicked slots / slots shown lies in
[0, 1] and each slot is one Bernoulli trial. Wilson's interval (not the normal
approximation) because CTRs sit near 0 and groups can be small; it comes from SciPy's
``binomtest``. Slots of one list are not independent (a reader who clicks nothing skips the
whole list), so the interval is somewhat narrower than a cluster-robust one would be; per
position, where each list contributes one slot, it is exact in that respect.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from scipy.stats import binomtest

CONFIDENCE = 0.95


def wilson(clicks: int, shown: int) -> tuple[float, float] | None:
    """The 95% Wilson interval of ``clicks / shown``; ``None`` when nothing was shown."""
    if shown <= 0:
        return None
    interval = binomtest(clicks, shown).proportion_ci(CONFIDENCE, method="wilson")
    return float(interval.low), float(interval.high)


@dataclass(frozen=True)
class Cell:
    """Counts for one group (model version x strategy x surface, optionally x position)."""

    model_version: int | None
    strategy: str
    surface: str
    position: int | None
    lists: int
    shown: int
    clicks: int
    likes: int = 0
    dwell_seconds: float = 0.0

    def as_json(self) -> dict:
        ci = wilson(self.clicks, self.shown)
        body = {
            "model_version": self.model_version,
            "strategy": self.strategy,
            "surface": self.surface,
            "lists": self.lists,
            "impressions": self.shown,
            "clicks": self.clicks,
            "ctr": self.clicks / self.shown if self.shown else None,
            "ci95": list(ci) if ci else None,
        }
        if self.position is None:
            body.update(likes=self.likes, dwell_seconds=self.dwell_seconds)
        else:
            body["position"] = self.position
        return body


def bounded(values: Iterable[str], keep: int, other: str = "other") -> dict[str, str]:
    """Label value for each of ``values`` (most important first): the first ``keep`` keep
    their own, the rest share ``other``, so a series set never grows without bound."""
    return {value: (value if n < keep else other) for n, value in enumerate(values)}


def version_label(version: int | None) -> str:
    return "none" if version is None else str(version)


def by_importance(cells: Sequence[Cell], key) -> list[str]:
    """Distinct ``key(cell)`` values, most slots shown first."""
    totals: dict[str, int] = {}
    for cell in cells:
        totals[key(cell)] = totals.get(key(cell), 0) + cell.shown
    return sorted(totals, key=lambda value: (-totals[value], value))
