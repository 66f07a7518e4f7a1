"""The catalog in the served model: names, hiding and expiry, factors mapped from content."""

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from services.recommender.content import ContentMap, ItemInfo, content_text
from services.recommender.model import fit_recommender
from tests.services.recommender.test_model import A_ITEMS, B_ITEMS, PARAMS, two_clusters

PUBLISHED = datetime(2026, 12, 1, tzinfo=UTC)


@pytest.fixture
def rec():
    return fit_recommender(two_clusters(), PARAMS, num_threads=1)


def ids(scored):
    return [item for item, _ in scored]


def test_until_ends_hidden_expired_and_aged_items():
    assert ItemInfo("t", "news", hidden=True).until({}) == -np.inf
    assert ItemInfo("t", "film").until({"news": 3600}) == np.inf
    aged = ItemInfo("t", "news", published_at=PUBLISHED)
    assert aged.until({"news": 3600}) == PUBLISHED.timestamp() + 3600
    expiring = ItemInfo("t", "news", published_at=PUBLISHED, expires_at=PUBLISHED + timedelta(60))
    assert expiring.until({}) == (PUBLISHED + timedelta(60)).timestamp()


def test_content_text_is_title_tags_summary():
    assert content_text("Harbour reopens", ["ferries", "weather"], " After the storm. ") == (
        "Harbour reopens. ferries, weather. After the storm."
    )
    assert content_text("Only a title", [], "") == "Only a title"


def test_the_map_learns_a_linear_relation_and_needs_enough_items():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 8))
    truth = rng.normal(size=(8, 3))
    y = 0.5 + x @ truth
    mapping = ContentMap.fit(x, y, ridge=1e-6)
    assert np.allclose(mapping.factors(x[:5]), y[:5], atol=1e-3) and mapping.scale == pytest.approx(
        1
    )
    shrunk = ContentMap.fit(x, y, ridge=1e4)  # heavy shrinkage, spread restored
    spread = np.median(np.linalg.norm(shrunk.factors(x) - shrunk.mean_factors, axis=1))
    assert spread == pytest.approx(np.median(np.linalg.norm(y - y.mean(0), axis=1)), rel=1e-3)
    assert mapping.factors(x[0]).shape == (1, 3) and mapping.factors(x).dtype == np.float32
    assert ContentMap.fit(x[:5], y[:5]) is None


def test_a_hidden_item_leaves_every_answer_at_once(rec):
    user = "a-user0"
    first = ids(rec.recommend(user, k=3))[0]
    popular = ids(rec.popular(k=20))
    assert first in popular
    rec.set_info(first, ItemInfo("Gone", "news", hidden=True))
    assert first not in ids(rec.recommend(user, k=20, exclude_seen=False))
    assert first not in ids(rec.popular(k=20))
    other = next(i for i in A_ITEMS if i != first)
    assert first not in ids(rec.similar_items(other, k=20))
    rec.set_info(first, ItemInfo("Back", "news"))
    assert first in ids(rec.popular(k=20)) and rec.title_of(first) == "Back"


def test_an_expired_item_is_not_shown(rec):
    item = ids(rec.popular(k=1))[0]
    rec.set_info(item, ItemInfo("Old", "news", expires_at=datetime(2000, 1, 1, tzinfo=UTC)))
    assert item not in ids(rec.popular(k=20))


def test_mapped_factors_make_a_new_item_recommendable_until_readers_fold_it_in(rec):
    # An item "like the a-items": the mean of their factors.
    a_factors = np.stack([rec.factors_of("item", i) for i in A_ITEMS])
    rec.set_info("new-a", ItemInfo("New for a", "article"))
    rec.add_mapped("new-a", a_factors.mean(axis=0))
    assert "new-a" in ids(rec.recommend("a-user0", k=3))
    assert "new-a" not in ids(rec.recommend("b-user0", k=3))
    assert rec.kind_of("new-a") == "article" and rec.needs_readers_factors("new-a")
    # Readers from cluster b read it: fold-in replaces the mapped factors with theirs.
    readers = [(f"b-user{u}", 8.0) for u in range(10)]
    assert rec.fold_in_items({"new-a": readers}, {}) == ["new-a"]
    assert not rec.needs_readers_factors("new-a")
    b_like = rec.factors_of("item", "new-a") @ rec.factors_of("item", B_ITEMS[0])
    a_like = rec.factors_of("item", "new-a") @ rec.factors_of("item", A_ITEMS[0])
    assert b_like > a_like
    # A mapped vector never overrides readers' factors.
    rec.add_mapped("new-a", a_factors.mean(axis=0))
    assert not rec.needs_readers_factors("new-a")
