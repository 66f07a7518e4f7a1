"""The Feedback panel's state: CTR per model version, strategy and surface over time, the
latest position curve, and how the last sample of ``/metrics/ctr`` went.

Each sample of the feedback service's sliding window becomes one point per group (CTR and
its 95% Wilson bounds as the service computed them), kept in ring buffers like the lag
history; groups are capped so memory stays bounded whatever labels arrive.
"""

from __future__ import annotations

from collections import deque
from typing import Any

#: (time, ctr, ci low, ci high, slots shown, clicks) per sample of one group.
Point = tuple[float, float | None, float | None, float | None, int, int]
GroupKey = tuple[int | None, str, str]  # model version, strategy, surface


def _key(row: dict[str, Any]) -> GroupKey:
    return (row.get("model_version"), str(row.get("strategy")), str(row.get("surface")))


def _label(key: GroupKey) -> str:
    version, strategy, surface = key
    return f"{'v' + str(version) if version is not None else 'no model'} {strategy} · {surface}"


def _r(value: float | None, digits: int = 4) -> float | None:
    return None if value is None else round(float(value), digits)


class FeedbackPanel:
    def __init__(self, points: int, max_groups: int = 12) -> None:
        self.points = points
        self.max_groups = max_groups
        self.series: dict[GroupKey, deque[Point]] = {}
        self.latest: dict[str, Any] | None = None

    def observe(self, body: dict[str, Any], now: float) -> None:
        """One answer of ``/metrics/ctr``: a point for every group it names."""
        groups = sorted(body.get("groups") or [], key=lambda g: -(g.get("impressions") or 0))
        for row in groups:
            key = _key(row)
            series = self.series.get(key)
            if series is None:
                if len(self.series) >= self.max_groups:
                    continue  # the most-shown groups keep their place
                series = self.series[key] = deque(maxlen=self.points)
            ci = row.get("ci95") or (None, None)
            series.append(
                (now, row.get("ctr"), ci[0], ci[1], row.get("impressions", 0), row.get("clicks", 0))
            )
        self.latest = body

    def view(self) -> dict[str, Any]:
        """The panel's JSON (the collector adds lists/s from the Kafka sampler)."""
        latest = self.latest or {}
        groups = []
        for key, series in self.series.items():
            newest = next((row for row in latest.get("groups") or [] if _key(row) == key), None)
            groups.append(
                {
                    "model_version": key[0],
                    "strategy": key[1],
                    "surface": key[2],
                    "label": _label(key),
                    "current": newest,
                    "series": [
                        [round(t, 1), _r(c), _r(lo), _r(hi), n, k] for t, c, lo, hi, n, k in series
                    ],
                }
            )
        positions: dict[GroupKey, list[dict[str, Any]]] = {}
        for row in latest.get("positions") or []:
            positions.setdefault(_key(row), []).append(
                {
                    "position": row.get("position"),
                    "impressions": row.get("impressions"),
                    "clicks": row.get("clicks"),
                    "ctr": _r(row.get("ctr")),
                    "ci95": [_r(b) for b in row.get("ci95") or []] or None,
                }
            )
        return {
            "window_seconds": latest.get("window_seconds"),
            "organic_clicks": latest.get("organic_clicks"),
            "groups": groups,
            "positions": [
                {"label": _label(key), "points": sorted(rows, key=lambda r: r["position"] or 0)}
                for key, rows in positions.items()
            ],
        }
