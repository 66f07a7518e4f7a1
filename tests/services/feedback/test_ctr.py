"""CTR arithmetic, intervals and label bounds: no broker, no database."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry

from services.feedback.ctr import Cell, bounded, wilson
from services.feedback.series import MAX_VERSIONS, CtrSeries
from shared.metrics import Metrics


def test_wilson_matches_the_closed_form_and_stays_inside_0_1():
    low, high = wilson(3, 10)
    # Wilson's score interval, z = 1.959964, computed by hand.
    assert low == pytest.approx(0.107791, abs=1e-6) and high == pytest.approx(0.603222, abs=1e-6)
    assert wilson(0, 50)[0] == 0.0 and 0 < wilson(0, 50)[1] < 0.1
    assert wilson(50, 50)[1] == pytest.approx(1.0)
    assert wilson(0, 0) is None


def test_a_cell_reports_ctr_with_its_interval():
    body = Cell(4, "als", "home", None, lists=5, shown=50, clicks=5, likes=1).as_json()
    assert body["ctr"] == 0.1 and body["impressions"] == 50 and body["lists"] == 5
    assert body["ci95"][0] < 0.1 < body["ci95"][1] and body["likes"] == 1


def test_labels_beyond_the_bound_share_other():
    assert bounded(["a", "b", "c"], 2) == {"a": "a", "b": "b", "c": "other"}


def test_the_series_keep_a_bounded_set_of_versions():
    registry = CollectorRegistry()
    series = CtrSeries(Metrics(registry))
    cells = [Cell(v, "als", "home", None, 1, 100 - v, 1) for v in range(1, 12)]
    series.show(cells, [Cell(1, "als", "home", 1, 1, 10, 2)], organic=3)
    versions = {
        s.labels["model_version"]
        for metric in registry.collect()
        if metric.name == "marquee_feedback_impressions"
        for s in metric.samples
    }
    assert len(versions) == MAX_VERSIONS + 1 and "other" in versions
    assert (
        registry.get_sample_value("marquee_feedback_position_ctr_ratio", {"position": "1"}) == 0.2
    )
    assert registry.get_sample_value("marquee_feedback_organic_clicks") == 3
