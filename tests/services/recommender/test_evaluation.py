import json

import numpy as np
import pytest
import scipy.sparse
from implicit.evaluation import ranking_metrics_at_k

from services.recommender.evaluation import (
    PROTOCOLS,
    evaluate,
    events_from_ratings,
    popularity_model,
    ranking_metrics,
    split_global_temporal,
    split_per_user_temporal,
)
from services.recommender.model import AlsParams, train_als
from shared.data.movielens import Rating

PARAMS = AlsParams(factors=8, regularization=1.0, iterations=5, random_state=0)


def random_split(users=60, items=40, density=0.2, seed=3):
    rng = np.random.default_rng(seed)
    full = scipy.sparse.random(users, items, density=density, format="csr", rng=rng)
    full.data[:] = rng.choice([1.0, 4.0], size=full.nnz)
    in_test = rng.random(full.nnz) < 0.3
    coo = full.tocoo()

    def part(mask):
        return scipy.sparse.csr_matrix(
            (coo.data[mask], (coo.row[mask], coo.col[mask])), shape=full.shape
        )

    return part(~in_test), part(in_test)


def test_ranking_metrics_reproduce_implicits_for_the_same_model():
    train, test = random_split()
    model = train_als(train, PARAMS, num_threads=1)
    expected = ranking_metrics_at_k(model, train, test, K=10, show_progress=False)

    def recommend(user):
        return model.recommend(user, train[user], N=10)[0]

    got = ranking_metrics(recommend, test, k=10)
    assert got["precision"] == pytest.approx(expected["precision"], abs=1e-6)
    assert got["ndcg"] == pytest.approx(expected["ndcg"], abs=1e-6)
    assert 0 < got["precision"] < 1


def test_ranking_metrics_by_hand():
    # One user, two relevant items; the second recommendation is a hit.
    test = scipy.sparse.csr_matrix(([1.0, 1.0], ([0, 0], [1, 5])), shape=(2, 6))
    got = ranking_metrics(lambda user: [0, 1, 2], test, k=10)
    assert got["precision"] == pytest.approx(1 / 2)  # hits / min(K, relevant)
    discount = 1 / np.log2(3)
    assert got["ndcg"] == pytest.approx(discount / (1 + discount))
    assert got["recall"] == pytest.approx(1 / 2)  # hits / relevant, per user


def test_popularity_model_ranks_by_user_count():
    train = scipy.sparse.csr_matrix(np.array([[1, 0, 4], [0, 0, 1], [1, 0, 0], [0, 0, 1]]))
    ids, _ = popularity_model(train).recommend(3, train[3], N=2)
    assert ids.tolist() == [0, 1]  # item 2 (most popular) is seen by user 3


def ratings():
    rng = np.random.default_rng(1)
    out = []
    for t in range(600):
        user, item = int(rng.integers(30)), int(rng.integers(25))
        out.append(Rating(str(user), str(item), float(rng.integers(1, 6)), 1_000 + t))
    return out


def test_events_use_the_service_weights():
    events = events_from_ratings([Rating("u", "i", 5.0, 1), Rating("u", "j", 3.0, 2)])
    assert events == [("u", "i", 4.0, 1), ("u", "j", 1.0, 2)]


def test_per_user_split_holds_out_each_users_latest_fifth():
    events = [("u", str(i), 1.0, 100 - i) for i in range(10)] + [("v", "x", 1.0, 0)]
    train, test = split_per_user_temporal(events)
    assert sorted(e[3] for e in test) == [99, 100]  # u's two latest; v's single event stays
    assert len(train) == 9


def test_global_split_holds_out_the_latest_fifth_of_all():
    events = [(str(i % 3), str(i), 1.0, i) for i in range(10)][::-1]
    train, test = split_global_temporal(events)
    assert [e[3] for e in test] == [8, 9] and max(e[3] for e in train) == 7


def test_evaluate_returns_the_documented_shape():
    result = evaluate(ratings(), PARAMS, num_threads=1)
    json.dumps(result)
    assert list(result) == ["protocols"]
    assert set(result["protocols"]) == set(PROTOCOLS)
    for protocol in result["protocols"].values():
        assert set(protocol["models"]) == {"als", "popularity", "served"}
        for metrics in protocol["models"].values():
            assert set(metrics) == {"precision@10", "ndcg@10"}
            assert all(isinstance(v, float) and 0 <= v <= 1 for v in metrics.values())
    # Every per-user test user has training events, so served is ALS for all of them.
    per_user = result["protocols"]["per_user_temporal"]
    assert per_user["cold_test_users"] == 0
    assert per_user["models"]["served"] == pytest.approx(per_user["models"]["als"], abs=1e-6)


def test_the_hybrid_scores_items_first_seen_in_the_test_split():
    rng = np.random.default_rng(0)
    content = {str(i): v / np.linalg.norm(v) for i, v in enumerate(rng.normal(size=(25, 8)))}
    result = evaluate(ratings(), PARAMS, num_threads=1, content=content)
    for protocol in result["protocols"].values():
        assert set(protocol["models"]) == {"als", "popularity", "served", "hybrid"}


def test_the_cli_lists_the_protocols_evaluation_knows():
    from services.recommender import cli

    assert cli.TEMPORAL == tuple(PROTOCOLS)
    assert cli.PROTOCOLS == (*PROTOCOLS, "item_cold_start")
