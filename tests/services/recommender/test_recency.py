"""The freshness prior per kind and the per-tag cap, on hand-made factors: one user whose
score for an item is the item's first factor."""

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
import scipy.sparse

from services.recommender.content import ItemInfo
from services.recommender.model import IdMap, Recommender, als_from_factors
from services.recommender.recency import Shaping, capped, capped_top_k
from tests.services.recommender.test_model import PARAMS

HOUR = 3600.0
NEWS = Shaping(half_life_seconds={"news": 12 * HOUR})


def ago(hours: float) -> datetime:
    return datetime.now(UTC) - timedelta(hours=hours)


def served(items: dict[str, tuple[float, ItemInfo]], shaping: Shaping = NEWS) -> Recommender:
    """A Recommender for user "u" scoring each item at its given affinity."""
    ids = list(items)
    factors = np.array([[affinity, 1.0] for affinity, _ in items.values()], dtype=np.float32)
    model = als_from_factors(np.array([[1.0, 0.0]]), factors, PARAMS, num_threads=1)
    return Recommender(
        model,
        IdMap(["u"]),
        IdMap(ids),
        scipy.sparse.csr_matrix((1, len(ids))),
        np.arange(len(ids), 0, -1, dtype=np.float64),  # popularity: the listed order
        [info.kind for _, info in items.values()],
        catalog={item: info for item, (_, info) in items.items()},
        shaping=shaping,
    )


def fillers(n: int = 8) -> dict[str, tuple[float, ItemInfo]]:
    """Films spread from -1 to 1: the scores' spread the prior is measured in."""
    return {f"film{i}": (a, ItemInfo(None, "film")) for i, a in enumerate(np.linspace(-1, 1, n))}


def scores(rec: Recommender) -> dict[str, float]:
    return dict(rec.recommend("u", k=len(rec.items)))


def test_with_equal_affinity_the_fresh_news_item_ranks_first():
    # The old one comes first in index order: ties would go to it.
    rec = served(
        {
            "old": (0.5, ItemInfo(None, "news", published_at=ago(72))),
            "fresh": (0.5, ItemInfo(None, "news", published_at=ago(0.5))),
            **fillers(),
        }
    )
    ranked = [i for i, _ in rec.recommend("u", k=len(rec.items))]
    assert ranked.index("fresh") < ranked.index("old")
    assert scores(rec)["fresh"] > scores(rec)["old"]


def test_news_several_half_lives_old_loses_to_fresh_news_of_lower_affinity():
    items = {
        "old": (1.0, ItemInfo(None, "news", published_at=ago(48))),  # four half-lives
        "fresh": (0.8, ItemInfo(None, "news", published_at=ago(1))),
        **fillers(),
    }
    assert [i for i, _ in served(items).recommend("u", k=2, kind="news")] == ["fresh", "old"]
    # The prior is what decides: without it affinity wins.
    unweighted = Shaping(half_life_seconds={"news": 12 * HOUR}, weight=0)
    in_order = served(items, unweighted).recommend("u", k=2, kind="news")
    assert [i for i, _ in in_order] == ["old", "fresh"]


def test_kinds_without_a_half_life_and_items_without_published_at_keep_their_score():
    rec = served(
        {
            "film": (0.7, ItemInfo(None, "film", published_at=datetime(1977, 1, 1, tzinfo=UTC))),
            "undated": (0.6, ItemInfo(None, "news")),
            "old-news": (0.9, ItemInfo(None, "news", published_at=ago(100))),
            **fillers(),
        }
    )
    got = scores(rec)
    assert got["film"] == pytest.approx(0.7) and got["undated"] == pytest.approx(0.6)
    assert got["old-news"] < 0.9


def test_negative_scores_decay_downward_and_the_answer_shows_the_blended_score():
    rec = served(
        {
            "old": (-0.5, ItemInfo(None, "news", published_at=ago(24))),  # two half-lives
            "fresh": (-0.5, ItemInfo(None, "news", published_at=ago(0))),
            **fillers(),
        }
    )
    got = scores(rec)
    spread = float(np.std(rec.item_factors[:, 0]))
    assert got["old"] == pytest.approx(-0.5 - spread * 0.75, rel=1e-4)
    assert -0.5 - 1e-3 < got["fresh"] <= -0.5


def test_an_item_taken_in_later_decays_like_one_loaded_with_the_version():
    rec = served(fillers())
    rec.set_info("late", ItemInfo(None, "news", published_at=ago(36)))
    rec.add_mapped("late", np.array([0.5, 1.0]))
    assert scores(rec)["late"] < 0.5 - 0.8 * np.std(rec.item_factors[:, 0])


def tagged(tags_by_item: list[tuple[str, ...]], shaping: Shaping = NEWS) -> Recommender:
    """Items t0, t1, ... best first, with these tags."""
    n = len(tags_by_item)
    items = {
        f"t{i}": (1.0 - i / n, ItemInfo(None, "film", tags=tags))
        for i, tags in enumerate(tags_by_item)
    }
    return served(items, shaping)


def test_the_cap_holds_and_the_list_still_fills_from_further_down():
    tags = [("politics",)] * 10 + [("sport", "politics")] + [("sport",), ("culture",), ()]
    rec = tagged(tags)
    got = [i for i, _ in rec.recommend("u", k=4, max_per_tag=2)]
    assert got == ["t0", "t1", "t11", "t12"]  # t11 is the first without two politics items
    # A cap of one: the list fills from past the first pool of 4 * k candidates.
    assert [i for i, _ in rec.recommend("u", k=2, max_per_tag=1)] == ["t0", "t11"]
    # Not enough diverse items left: as many as the cap allows, items without tags included.
    assert [i for i, _ in rec.recommend("u", k=10, max_per_tag=1)] == ["t0", "t11", "t12", "t13"]


def test_cap_zero_leaves_the_order_unchanged():
    rec = tagged([("politics",)] * 6)
    plain = rec.recommend("u", k=6)
    assert rec.recommend("u", k=6, max_per_tag=0) == plain
    assert [i for i, _ in plain] == [f"t{i}" for i in range(6)]
    by_default = tagged([("politics",)] * 6, Shaping(max_per_tag=2))  # the service's setting
    assert [i for i, _ in by_default.recommend("u", k=6)] == ["t0", "t1"]
    assert by_default.recommend("u", k=6, max_per_tag=0) == plain  # a request turns it off


def test_the_popularity_fallback_is_capped_but_not_freshened():
    rec = served(
        {
            "old": (0.0, ItemInfo(None, "news", tags=("a",), published_at=ago(100))),
            "twin": (0.0, ItemInfo(None, "news", tags=("a",), published_at=ago(0))),
            "other": (0.0, ItemInfo(None, "news", tags=("b",), published_at=ago(0))),
        }
    )
    assert [i for i, _ in rec.recommend("stranger", k=3)] == ["old", "twin", "other"]
    assert [i for i, _ in rec.recommend("stranger", k=3, max_per_tag=1)] == ["old", "other"]
    assert rec.popular(3) == rec.recommend("stranger", k=3)


def test_capped_top_k_asks_for_larger_pools_only_when_needed():
    asked = []

    def ranked(n):
        asked.append(n)
        return np.arange(min(n, 30))

    tags = lambda i: ("x",) if i < 20 else ("y",)  # noqa: E731
    assert capped_top_k(ranked, 2, tags, cap=1) == [0, 20] and asked == [8, 32]
    asked.clear()
    assert capped_top_k(ranked, 3, tags, cap=0) == [0, 1, 2] and asked == [3]
    assert capped(iter(range(5)), 3, lambda i: ("x", "x"), cap=2) == [0, 1]


def test_shaping_refuses_what_the_prior_cannot_use():
    with pytest.raises(ValueError):
        Shaping(half_life_seconds={"news": 0})
    with pytest.raises(ValueError):
        Shaping(weight=-1)
