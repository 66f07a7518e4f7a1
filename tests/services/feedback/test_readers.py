"""The simulated readers' click model: seeded, position-biased, relevance-driven."""

from __future__ import annotations

import pytest

from services.feedback.readers import ClickModel, future_items
from shared.data.movielens import Rating


def test_the_same_seed_gives_the_same_clicks_and_another_seed_others():
    model, shown = ClickModel(), [f"i{n}" for n in range(10)]
    future = set(shown)
    runs = [model.clicks(shown, future, seed=s, reader="1") for s in (7, 7, 8)]
    assert runs[0] == runs[1] and runs[0] != runs[2]


def test_clicks_fall_with_position_and_follow_relevance():
    model, shown = ClickModel(), [f"i{n}" for n in range(10)]
    relevant = [0] * 11
    irrelevant = 0
    for reader in range(2_000):
        for p in model.clicks(shown, set(shown), seed=1, reader=str(reader)):
            relevant[p] += 1
        irrelevant += len(model.clicks(shown, set(), seed=1, reader=str(reader)))
    assert relevant[1] > relevant[2] > relevant[5] > relevant[10]
    assert relevant[1] / 2_000 == pytest.approx(0.8, abs=0.05)
    assert irrelevant < sum(relevant) / 10


def test_the_future_is_each_readers_latest_ratings():
    ratings = [Rating("1", f"i{t}", 4.0, t) for t in range(10)] + [Rating("2", "x", 3.0, 5)]
    future = future_items(ratings, holdout=0.2)
    assert future == {"1": {"i8", "i9"}, "2": {"x"}}
