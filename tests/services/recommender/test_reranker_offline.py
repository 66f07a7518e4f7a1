"""The offline protocol's pieces: candidates, labels, NDCG, and a deterministic run."""

from __future__ import annotations

import math
import random

import pytest

from services.recommender.model import AlsParams, fit_recommender
from services.recommender.reranker_offline import _ndcg, als_candidates, evaluate_reranker
from shared.data.movielens import Rating

PARAMS = AlsParams(factors=8, regularization=0.1, iterations=5)


def sequential_ratings(users: int = 40, seed: int = 4) -> list[Rating]:
    rng = random.Random(seed)
    ratings = []
    for user in range(users):
        start = rng.randrange(30)
        for step in range(15):
            item = (start + step + rng.randrange(3)) % 45
            ratings.append(Rating(str(user), str(item), 5.0, 1_000_000 + user * 100 + step))
    return ratings


def test_candidates_never_hold_an_item_the_user_already_has():
    events = [(r.user_id, r.item_id, 1.0, r.timestamp) for r in sequential_ratings()]
    model = fit_recommender(events, PARAMS)
    candidates = als_candidates(model, ["0", "1", "never-seen"], n=20)
    assert set(candidates) == {"0", "1"}
    for user, ranked in candidates.items():
        had = {e[1] for e in events if e[0] == user}
        assert ranked and not had & {item for item, _ in ranked}
        assert [s for _, s in ranked] == sorted((s for _, s in ranked), reverse=True)


def test_ndcg_of_a_case_worked_out_by_hand():
    train = [("u", "x", 1.0, 0.0), ("v", "x", 1.0, 0.0)]
    test = [("u", "a", 1.0, 1.0), ("v", "b", 1.0, 1.0), ("v", "c", 1.0, 1.0), ("u", "x", 1.0, 2.0)]
    # u: a at rank 2 -> 1/log2(3); v: b at rank 1 of 2 relevant -> 1 / (1 + 1/log2(3)).
    expected = (1 / math.log2(3) + 1 / (1 + 1 / math.log2(3))) / 2
    assert _ndcg({"u": ["b", "a"], "v": ["b", "z"]}, train, test, 10) == pytest.approx(expected)
    # A test user without a list counts as 0 (both rankers are averaged over the same users).
    assert _ndcg({"u": ["a"]}, train, test, 10) == pytest.approx(0.5)


def test_the_offline_run_is_deterministic_and_labels_come_from_the_training_period():
    ratings = sequential_ratings()
    first = evaluate_reranker(ratings, params=PARAMS)
    second = evaluate_reranker(ratings, params=PARAMS)
    assert first["ndcg@10"] == second["ndcg@10"]
    assert first["weights"] == second["weights"]
    # 15 events a user: 12 in training, of which the last 2 (round(12 * 0.2)) are the
    # later part; at most those 2 are clicks per user.
    assert 0 < first["clicks"] <= 2 * 40
    assert first["impressions"] > first["clicks"]
