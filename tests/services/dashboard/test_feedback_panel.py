"""The Feedback panel's bookkeeping: CTR per group over time from /metrics/ctr answers, the
position curve, lists/s from the impressions topic, and a feedback service that is away
(the real-service path is tests/integration/dashboard/test_feedback_panel.py)."""

from __future__ import annotations

import pytest

from services.dashboard.errors import FeedbackUnavailable
from tests.services.dashboard.test_collector_snapshot import PREFIX, state, tick
from tests.services.dashboard.test_collector_snapshot import world as snapshot_world


@pytest.fixture
def world():  # the snapshot tests' in-memory world: a fresh one per test
    return snapshot_world.__wrapped__()


def answer(clicks: int, shown: int = 100) -> dict:
    ctr = clicks / shown
    group = {"model_version": 3, "strategy": "als", "surface": "home", "lists": shown // 10}
    return {
        "window_seconds": 300,
        "organic_clicks": 2,
        "groups": [
            group
            | {"impressions": shown, "clicks": clicks, "ctr": ctr, "ci95": [ctr / 2, ctr * 2]},
            {
                "model_version": None,
                "strategy": "popularity",
                "surface": "home",
                "lists": 1,
                "impressions": 10,
                "clicks": 0,
                "ctr": 0.0,
                "ci95": [0.0, 0.28],
            },
        ],  # fmt: skip
        "positions": [
            group
            | {"position": 2, "impressions": 10, "clicks": 1, "ctr": 0.1, "ci95": [0.02, 0.4]},
            group | {"position": 1, "impressions": 10, "clicks": 3, "ctr": 0.3, "ci95": [0.1, 0.6]},
        ],  # fmt: skip
    }


def test_each_answer_is_a_point_per_group_and_the_positions_are_the_latest(world):
    collector, clock, kafka, *_ = world
    for n in range(3):
        kafka.ends[(f"{PREFIX}impressions", 0)] = 5 * n  # 5 lists a second
        tick(collector, clock)
        collector.sample_feedback(answer(clicks=10 + n))
    feedback = state(collector)["feedback"]
    assert feedback["source"]["ok"] and feedback["window_seconds"] == 300
    assert feedback["organic_clicks"] == 2
    als, popular = feedback["groups"]
    assert als["label"] == "v3 als · home" and popular["label"] == "no model popularity · home"
    assert [p[1] for p in als["series"]] == [0.1, 0.11, 0.12]
    assert als["series"][-1][2:] == [0.06, 0.24, 100, 12]
    assert als["current"]["clicks"] == 12
    (curve,) = feedback["positions"]
    assert [p["position"] for p in curve["points"]] == [1, 2]  # sorted for the chart
    assert feedback["lists_per_second"] == 5.0 and len(feedback["lists_series"]) == 2


def test_an_absent_feedback_service_is_shown_and_history_stays_bounded(world):
    collector, clock, *_ = world
    collector.sample_feedback(FeedbackUnavailable("cannot reach the feedback service at x"))
    feedback = state(collector)["feedback"]
    assert feedback["source"]["error"].startswith("FeedbackUnavailable: cannot reach")
    assert feedback["groups"] == [] and feedback["positions"] == []
    for n in range(40):
        collector.sample_feedback(answer(clicks=n))
        clock.now += 1
    assert state(collector)["feedback"]["source"]["ok"]
    points = collector.settings.history_points
    assert all(len(series) == points for series in collector.feedback.series.values())
