import numpy as np
import pytest
import scipy.sparse
from implicit.cpu.als import AlternatingLeastSquares

from services.recommender.model import (
    DEFAULT_HALF_LIFE_SECONDS,
    AlsParams,
    IdMap,
    UnknownItem,
    decayed_popularity,
    fit_recommender,
    top_k,
    train_als,
)

PARAMS = AlsParams(factors=2, regularization=0.1, iterations=15, random_state=0)
A_ITEMS = [f"a{i}" for i in range(10)]
B_ITEMS = [f"b{i}" for i in range(10)]
NOW = 1_000_000_000.0


def two_clusters() -> list[tuple[str, str, float, float]]:
    """Users of cluster a only touch a-items, users of b only b-items; b-items are more recent."""
    rng = np.random.default_rng(7)
    events = []
    for cluster, items in (("a", A_ITEMS), ("b", B_ITEMS)):
        for u in range(20):
            for item in rng.choice(items, size=6, replace=False):
                age = 90 * 86_400 if cluster == "a" else 86_400
                events.append((f"{cluster}-user{u}", str(item), 4.0, NOW - age))
    return events


@pytest.fixture
def rec():
    return fit_recommender(two_clusters(), PARAMS, num_threads=1)


def ids(scored):
    return [item for item, _ in scored]


def test_id_map_is_stable_and_append_only():
    m = IdMap(["x", "y"])
    assert m.add("y") == 1 and m.add("z") == 2
    assert [m.external(i) for i in range(len(m))] == ["x", "y", "z"] == list(m)
    assert m.get("nope") is None and "x" in m


def test_params_are_validated():
    with pytest.raises(ValueError):
        AlsParams(factors=0)
    with pytest.raises(ValueError):
        AlsParams(alpha=0)


def test_train_als_uses_the_cpu_class_and_accepts_csr_array():
    matrix = scipy.sparse.csr_array(np.eye(6, dtype=np.float32))  # implicit itself rejects these
    model = train_als(matrix, PARAMS, num_threads=1)
    assert type(model) is AlternatingLeastSquares
    assert model.user_factors.shape == (6, 2) and model.item_factors.shape == (6, 2)


def test_exclude_seen_never_returns_a_seen_item(rec):
    for user_id in rec.users:
        seen = {rec.items.external(i) for i in rec.seen_row(rec.users.get(user_id)).indices}
        for k in (1, 10, 14, 25):  # 25 > the 14 unseen items: the filtered ones must not leak
            got = ids(rec.recommend(user_id, k))
            assert not seen & set(got)
            assert len(got) == min(k, 20 - len(seen)) and len(set(got)) == len(got)
    user = rec.users.external(0)
    assert set(ids(rec.recommend(user, 20, exclude_seen=False))) == set(A_ITEMS + B_ITEMS)


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
def test_non_finite_scores_are_never_returned(rec):
    rec.model.item_factors[rec.items.get("a3")] = np.nan
    rec.model.item_factors[rec.items.get("a4")] = np.inf
    for user_id in rec.users:
        got = rec.recommend(user_id, 20, exclude_seen=False)
        assert all(np.isfinite(score) for _, score in got)
        assert not {"a3", "a4"} & set(ids(got))


def test_cold_user_gets_time_decayed_popularity(rec):
    assert rec.recommend("stranger", 5) == rec.popular(5)
    # Cluster a is as large as b but 90 days older: decay puts every b-item first.
    assert set(ids(rec.popular(10))) == set(B_ITEMS)
    assert ids(rec.popular(3, exclude={ids(rec.popular(1))[0]})) == ids(rec.popular(4))[1:]
    assert "stranger" not in rec.users


def test_decayed_popularity_halves_every_half_life():
    pop = decayed_popularity(
        np.array([0, 1, 1, 2]),
        np.array([1.0, 1.0, 1.0, 4.0]),
        np.array(
            [NOW, NOW - DEFAULT_HALF_LIFE_SECONDS, NOW - 2 * DEFAULT_HALF_LIFE_SECONDS, NOW + 5]
        ),
        n_items=4,
        now=NOW,
    )
    # The future event (clock skew) counts its weight, never more; item 3 has no events.
    np.testing.assert_allclose(pop, [1.0, 0.75, 4.0, 0.0])


def test_fold_in_from_full_history_recomputes_the_factors(rec):
    # A new user with exactly an existing user's history gets that history's least-squares
    # factors (what recalculate_user computes) and, therefore, the same ranking.
    twin = rec.users.external(3)
    history = [(rec.items.external(i), v) for i, v in zip(*_row(rec, twin), strict=True)]
    assert rec.fold_in("newcomer", history)
    expected = rec.model.recalculate_user(0, rec.seen_row(rec.users.get(twin)))
    np.testing.assert_allclose(rec.user_factors[rec.users.get("newcomer")], expected, rtol=1e-5)
    # Folded in (stored) and folded in on the fly (recalculate_user, not stored) agree.
    assert rec.recommend("newcomer", 5) == rec.recommend("visitor", 5, history=history)


def _row(rec, user_id):
    row = rec.seen_row(rec.users.get(user_id))
    return row.indices, row.data


def test_fold_in_moves_recommendations_toward_the_clicked_items(rec):
    assert rec.fold_in("new", [("a1", 4.0)])
    assert set(ids(rec.recommend("new", 5))) <= set(A_ITEMS) - {"a1"}
    # The full history (the a-click plus three b-clicks) outweighs the single a-click.
    assert rec.fold_in("new", [("a1", 4.0), ("b1", 4.0), ("b2", 4.0), ("b3", 4.0)])
    got = ids(rec.recommend("new", 3))
    assert set(got) <= set(B_ITEMS) - {"b1", "b2", "b3"}
    assert not {"a1", "b1", "b2", "b3"} & set(ids(rec.recommend("new", 20)))


def test_unknown_user_with_history_is_folded_in_on_the_fly_without_being_stored(rec):
    got = ids(rec.recommend("visitor", 4, history=[("b5", 1.0), ("b6", 1.0)]))
    assert set(got) <= set(B_ITEMS) - {"b5", "b6"}
    assert "visitor" not in rec.users


def test_history_of_unknown_items_only_leaves_the_user_cold(rec):
    assert not rec.fold_in("ghost", [("never-seen", 1.0)])
    assert not rec.has_factors("ghost")
    assert rec.recommend("ghost", 5) == rec.popular(5)


def test_similar_items_stay_in_the_cluster_and_leave_the_item_out(rec):
    got = ids(rec.similar_items("a2", 5))
    assert len(got) == 5 and set(got) <= set(A_ITEMS) - {"a2"}
    with pytest.raises(UnknownItem):
        rec.similar_items("nope")


def test_top_k_breaks_ties_by_index_and_drops_excluded_and_non_finite():
    scores = np.array([1.0, 3.0, np.nan, 3.0, -np.inf, 2.0])
    assert top_k(scores, 10).tolist() == [1, 3, 5, 0]
    assert top_k(scores, 2, np.array([1])).tolist() == [3, 5]
    assert top_k(scores, 0).tolist() == []


def test_a_new_item_gets_factors_from_its_users_and_reaches_their_neighbours(rec):
    # Half of cluster a read the new article; the other half should be offered it.
    readers = [f"a-user{u}" for u in range(10)]
    fitted = rec.fold_in_items({"article-1": [(u, 4.0) for u in readers]}, {"article-1": "article"})
    assert fitted == ["article-1"] and rec.items.get("article-1") == 20
    assert rec.factors_of("item", "article-1") is not None
    assert ids(rec.recommend("a-user15", 20)).index("article-1") < 11  # ahead of every b item
    assert "article-1" not in ids(rec.recommend("b-user3", 10))
    # Its readers' rows stay consistent: seen filtering and popularity still work.
    assert ids(rec.popular(3)) == ids(rec.popular(3, exclude=["article-1"]))


def test_an_item_no_known_user_touched_stays_without_factors(rec):
    assert rec.fold_in_items({"lonely": [("stranger", 1.0)]}, {}) == []
    assert "lonely" not in rec.items


def test_kind_filters_recommendations_and_popularity(rec):
    rec.fold_in_items(
        {"article-1": [(f"a-user{u}", 4.0) for u in range(10)]}, {"article-1": "article"}
    )
    assert ids(rec.recommend("a-user15", 5, kind="article")) == ["article-1"]
    assert ids(rec.recommend("b-user3", 5, kind="article")) in ([], ["article-1"])
    assert all(
        item.startswith(("a", "b")) for item in ids(rec.recommend("a-user15", 30, kind="item"))
    )
    assert rec.popular(5, kind="article") == []  # no popularity until the next reload
    assert len(rec.popular(5, kind="item")) == 5


def test_adopted_factors_are_served_like_local_fold_ins(rec):
    twin = fit_recommender(two_clusters(), PARAMS, num_threads=1)
    history = [("b1", 4.0), ("b2", 4.0), ("b3", 4.0)]
    assert rec.fold_in("newcomer", history)
    twin.set_factors("user", "newcomer", rec.factors_of("user", "newcomer"), history=history)
    assert twin.recommend("newcomer", 5) == rec.recommend("newcomer", 5)
    assert not {"b1", "b2", "b3"} & set(ids(twin.recommend("newcomer", 20)))

    rec.fold_in_items({"article-1": [("a-user1", 4.0)]}, {"article-1": "article"})
    twin.set_factors("item", "article-1", rec.factors_of("item", "article-1"), kind="article")
    assert twin.recommend("a-user1", 21, exclude_seen=False) == rec.recommend(
        "a-user1", 21, exclude_seen=False
    )
    assert twin.kinds[twin.items.get("article-1")] == "article"
