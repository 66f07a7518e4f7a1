"""The re-ranker's features on a small case worked out by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from services.recommender.features import (
    CATEGORICAL,
    DAY_SECONDS,
    NUMERIC,
    YEAR_SECONDS,
    FeatureSource,
    ItemFacts,
    UserFacts,
)

NOW = 1_000 * DAY_SECONDS
ITEMS = {
    "a": ItemFacts("film", ("Drama",), NOW - 2 * YEAR_SECONDS),
    "b": ItemFacts("film", ("Comedy", "Drama")),
    "c": ItemFacts("news", ("Sport", "Comedy"), NOW),
}
EVENTS = [
    ("u", "a", 1.0, NOW - 30 * DAY_SECONDS),  # outside the 7-day window
    ("u", "b", 4.0, NOW - 2 * DAY_SECONDS),
    ("u", "b", 1.0, NOW - DAY_SECONDS),  # a re-read: popularity yes, activity no
    ("v", "a", 1.0, NOW - DAY_SECONDS),
    ("v", "c", 1.0, NOW + DAY_SECONDS),  # after now: ignored
]


@pytest.fixture
def source() -> FeatureSource:
    vectors = {"a": np.array([1.0, 0.0]), "b": np.array([0.0, 2.0]), "c": np.array([3.0, 3.0])}
    return FeatureSource.from_events(
        EVENTS,
        now=NOW,
        items=ITEMS,
        users={"u": UserFacts(30, "F", "writer")},
        item_vectors=vectors,
    )


def test_counts_and_history(source):
    assert source.popularity == {"a": 2, "b": 2}
    assert source.activity == {"u": 2, "v": 1}
    assert source.tag_counts["u"] == {"Drama": 2, "Comedy": 1}
    assert source.last_items["u"] == ["a", "b"]
    assert source.last_seen["u"] == NOW - DAY_SECONDS
    assert source.recent_popularity("a", NOW) == 1  # v's read; u's is a month old


def test_features_of_a_candidate(source):
    f = source.features("u", "c", 0.5, rank=3, top_score=2.0, at=NOW)
    assert set(f) == set(NUMERIC) | set(CATEGORICAL)
    assert f["als_score"] == 0.5
    assert f["als_relative"] == 0.25
    assert f["als_rank"] == 0.25
    assert f["popularity"] == 0.0  # v's read of c is in the future
    assert f["item_age_years"] == 0.0
    assert f["tag_match"] == pytest.approx(1 / 2)  # Comedy: 1 of u's 2 items
    assert f["tag_share"] == pytest.approx(1 / 2)  # Sport unread, Comedy read
    # c is at 45° from both a and b.
    assert f["last_similarity_max"] == pytest.approx(math.sqrt(0.5))
    assert f["last_similarity_mean"] == pytest.approx(math.sqrt(0.5))
    assert f["user_activity"] == pytest.approx(math.log1p(2))
    assert f["user_age"] == pytest.approx(0.3)
    assert (f["user_age_known"], f["kind"], f["gender"], f["occupation"]) == (
        1.0,
        "news",
        "F",
        "writer",
    )


def test_defaults_for_an_unknown_user_and_item(source):
    f = source.features("nobody", "zzz", 1.0, rank=0)
    assert f["als_relative"] == 1.0 and f["als_rank"] == 1.0
    assert f["tag_match"] == f["tag_share"] == f["user_activity"] == 0.0
    assert f["last_similarity_max"] == f["user_age_known"] == 0.0
    assert (f["kind"], f["gender"], f["occupation"]) == ("item", "unknown", "unknown")


def test_age_is_counted_from_the_users_now(source):
    # u's latest event is a day before NOW: a is 2 years minus a day old then.
    f = source.features("u", "a", 1.0, rank=0)
    assert f["item_age_years"] == pytest.approx(math.log1p(2 - DAY_SECONDS / YEAR_SECONDS))
