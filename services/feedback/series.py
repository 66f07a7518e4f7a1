"""The Prometheus series of CTR over the configured sliding window, with bounded labels.

Model versions, strategies and surfaces are open-ended over a deployment's life, so each
keeps only its most-shown values as labels (the newest versions, in practice) and folds
the rest into ``other``; positions past ``MAX_POSITION`` are not exported one by one.
"""

from __future__ import annotations

from collections import defaultdict

from shared.metrics import Metrics

from .ctr import Cell, bounded, by_importance, version_label, wilson

MAX_VERSIONS = 5
MAX_STRATEGIES = 5
MAX_SURFACES = 10
MAX_POSITION = 20


class CtrSeries:
    def __init__(self, metrics: Metrics) -> None:
        labels = ("model_version", "strategy", "surface")
        self.shown = metrics.gauge(
            "marquee_feedback_impressions", "Slots shown in the window", labels
        )
        self.clicks = metrics.gauge(
            "marquee_feedback_clicks", "Slots clicked (attributed) in the window", labels
        )
        self.ctr = metrics.gauge("marquee_feedback_ctr_ratio", "Click-through rate", labels)
        self.bounds = metrics.gauge(
            "marquee_feedback_ctr_ci95_ratio", "95% Wilson bounds of the CTR", (*labels, "bound")
        )
        self.position_ctr = metrics.gauge(
            "marquee_feedback_position_ctr_ratio", "CTR by position, all lists", ("position",)
        )
        self.organic = metrics.gauge(
            "marquee_feedback_organic_clicks", "Clicks in the window no impression claims"
        )

    def show(self, by_group: list[Cell], by_position: list[Cell], organic: int) -> None:
        versions = bounded(
            by_importance(by_group, lambda c: version_label(c.model_version)), MAX_VERSIONS
        )
        strategies = bounded(by_importance(by_group, lambda c: c.strategy), MAX_STRATEGIES)
        surfaces = bounded(by_importance(by_group, lambda c: c.surface), MAX_SURFACES)
        totals: dict[tuple[str, str, str], list[int]] = defaultdict(lambda: [0, 0])
        for cell in by_group:
            key = (
                versions[version_label(cell.model_version)],
                strategies[cell.strategy],
                surfaces[cell.surface],
            )
            totals[key][0] += cell.shown
            totals[key][1] += cell.clicks
        for gauge in (self.shown, self.clicks, self.ctr, self.bounds, self.position_ctr):
            gauge.clear()  # a group that left the window leaves the series too
        for key, (shown, clicks) in totals.items():
            self.shown.labels(*key).set(shown)
            self.clicks.labels(*key).set(clicks)
            if shown:
                self.ctr.labels(*key).set(clicks / shown)
                low, high = wilson(clicks, shown)
                self.bounds.labels(*key, "low").set(low)
                self.bounds.labels(*key, "high").set(high)
        positions: dict[int, list[int]] = defaultdict(lambda: [0, 0])
        for cell in by_position:
            if cell.position is not None and cell.position <= MAX_POSITION:
                positions[cell.position][0] += cell.shown
                positions[cell.position][1] += cell.clicks
        for position, (shown, clicks) in sorted(positions.items()):
            if shown:
                self.position_ctr.labels(str(position)).set(clicks / shown)
        self.organic.set(organic)
