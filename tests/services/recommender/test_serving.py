"""Serving's logic on in-memory stores: loading the active version, and what it answers."""

import asyncio

from services.recommender.serving import load_active, recommend_async, recommend_for
from tests.services.recommender.fakes import TASTES, empty, row, seeded

HALF_LIFE = 30 * 86_400.0


def test_nothing_is_loaded_before_a_version_is_active():
    assert load_active(*empty(), HALF_LIFE) is None


def test_the_active_version_loads_with_what_each_user_has_seen():
    interactions, models = seeded()
    loaded = load_active(interactions, models, HALF_LIFE)
    assert loaded.version.id == 1
    assert set(loaded.recommender.users) == set(TASTES)
    # Its fold-ins are read from the store's time of loading on.
    assert loaded.synced_from > models._trained[1]
    items, strategy = recommend_for(loaded, interactions, "a1", k=3)
    assert strategy == "als" and items[0][0] == "x4"
    assert not {i for i, _ in items} & set(TASTES["a1"])
    with_seen, _ = recommend_for(loaded, interactions, "a1", k=8, exclude_seen=False)
    assert set(TASTES["a1"]) <= {i for i, _ in with_seen}


def test_the_newest_factors_load_fold_ins_included():
    interactions, models = seeded()
    folded = load_active(interactions, models, HALF_LIFE).recommender
    folded.fold_in("late", [("y1", 2.0), ("y2", 2.0)])
    models.upsert_factors(1, "user", [("late", folded.factors_of("user", "late"))])
    loaded = load_active(interactions, models, HALF_LIFE)
    assert loaded.recommender.has_factors("late")
    assert (
        loaded.recommender.factors_of("user", "late") == folded.factors_of("user", "late")
    ).all()


def test_popularity_and_kinds_come_from_the_store():
    interactions, models = seeded()
    interactions.kinds["y1"] = "article"
    loaded = load_active(interactions, models, HALF_LIFE)
    popular = dict(loaded.recommender.popular(k=8))
    assert popular["x1"] == 2.0 * sum("x1" in items for items in TASTES.values())
    assert [i for i, _ in loaded.recommender.popular(k=8, kind="article")] == ["y1"]


def test_a_user_newer_than_the_model_is_scored_from_their_stored_history():
    interactions, models = seeded()
    loaded = load_active(interactions, models, HALF_LIFE)
    interactions.write([row("newcomer", "y1"), row("newcomer", "y2")])
    items, strategy = recommend_for(loaded, interactions, "newcomer", k=2)
    assert strategy == "als" and items[0][0] == "y3"  # what readers of y1 and y2 read next
    assert not {i for i, _ in items} & {"y1", "y2"}
    assert not loaded.recommender.has_factors("newcomer")  # scored on the fly, not stored


def test_nobody_known_gets_the_popular_items():
    interactions, models = seeded()
    loaded = load_active(interactions, models, HALF_LIFE)
    items, strategy = recommend_for(loaded, interactions, "nobody", k=3)
    assert strategy == "popularity"
    assert items == loaded.recommender.popular(k=3)


def test_inside_a_worker_the_answer_is_the_same():
    interactions, models = seeded()
    loaded = load_active(interactions, models, HALF_LIFE)
    for user in ("a1", "nobody"):
        expected = recommend_for(loaded, interactions, user, k=3, kind=None)
        assert asyncio.run(recommend_async(loaded, interactions, user, k=3)) == expected


def test_the_seen_matrix_keeps_only_the_versions_users_and_items():
    """Columns from the store, placed by the version's id maps; a pair whose user or item
    came after the version trained waits for a fold-in or the next version."""
    from services.recommender.model import IdMap
    from services.recommender.persistence import Confidences
    from services.recommender.serving import _seen

    triples = [("u2", "i1", 1.0), ("u1", "i2", 2.0), ("new", "i1", 4.0), ("u1", "new", 8.0)]
    confidences = Confidences.of(triples)
    assert list(confidences) == triples and len(confidences) == 4
    seen = _seen(confidences, IdMap(["u1", "u2"]), IdMap(["i1", "i2", "i3"]))
    assert seen.shape == (2, 3)
    assert seen.toarray().tolist() == [[0.0, 2.0, 0.0], [1.0, 0.0, 0.0]]
