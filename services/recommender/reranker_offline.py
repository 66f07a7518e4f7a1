"""Offline evaluation of the learned re-ranker on the ``per_user_temporal`` protocol.

The honest protocol: nothing the re-ranker learns from lies in the test period.

1. Split every user's events as :func:`.evaluation.split_per_user_temporal` does: the last
   20% are the test period, the rest the training period.
2. Split the training period the same way again: ALS fitted on its earlier part ranks its
   top-50 candidates per user (the "impressions"); a candidate the user read in the later
   part is a click, every other one a shown-but-not-clicked negative. Features come from
   the earlier part only. The re-ranker learns from these pairs, online, in a seeded order.
3. ALS refitted on the whole training period ranks top-50 candidates for each test user,
   with features from the whole training period; NDCG@10 of the re-ranked list against
   NDCG@10 of ALS's own order, both on the test period, training items excluded, metrics
   from :func:`.evaluation.ranking_metrics` (implicit's definitions).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime

import numpy as np
import scipy.sparse

from .confidence import Weights
from .evaluation import (
    TEST_FRACTION,
    K,
    events_from_ratings,
    ranking_metrics,
    split_per_user_temporal,
)
from .features import FeatureSource, ItemFacts, UserFacts
from .interactions import Event
from .model import AlsParams, Recommender, as_csr, blas_single_thread, fit_recommender
from .reranker import Candidate, Reranker, candidates_for, impression_pairs, new_pipeline

CANDIDATES = 50
EPOCHS = 2
SEED = 0


def movielens_facts(films: Iterable, readers: Iterable = ()) -> tuple[dict, dict]:
    """Item facts (kind ``film``, genres as tags, January 1 of the release year) and user
    facts from ``shared.data.movielens``'s films and readers."""
    items = {
        f.item_id: ItemFacts(
            "film",
            tuple(f.genres),
            datetime(f.year, 1, 1, tzinfo=UTC).timestamp() if f.year is not None else None,
        )
        for f in films
    }
    users = {r.user_id: UserFacts(r.age, r.gender, r.occupation) for r in readers}
    return items, users


def als_candidates(
    model: Recommender, user_ids: Iterable[str], n: int = CANDIDATES
) -> dict[str, list[tuple[str, float]]]:
    """Bare ALS's top ``n`` per user, training items excluded, non-finite scores dropped."""
    users = [u for u in user_ids if model.has_factors(u)]
    if not users:
        return {}
    rows = np.array([model.users.get(u) for u in users])
    with blas_single_thread():
        ids, scores = model.model.recommend(
            rows, model._seen[rows], N=n, filter_already_liked_items=True
        )
    out = {}
    for user, row_ids, row_scores in zip(users, ids, scores, strict=True):
        out[user] = [
            (model.items.external(int(i)), float(s))
            for i, s in zip(row_ids, row_scores, strict=True)
            if np.isfinite(s) and i >= 0
        ]
    return out


def feature_source(
    events: list[Event],
    model: Recommender,
    items: Mapping[str, ItemFacts],
    users: Mapping[str, UserFacts],
) -> FeatureSource:
    """Features as of the end of ``events``, with ``model``'s item factors."""
    vectors = {item: model.item_factors[index] for index, item in enumerate(model.items)}
    return FeatureSource.from_events(
        events, now=max(e[3] for e in events), items=items, users=users, item_vectors=vectors
    )


def candidate_lists(
    source: FeatureSource, candidates: Mapping[str, list[tuple[str, float]]]
) -> dict[str, list[Candidate]]:
    return {user: candidates_for(source, user, ranked) for user, ranked in candidates.items()}


def training_pairs(
    early: list[Event],
    late: list[Event],
    params: AlsParams,
    *,
    items: Mapping[str, ItemFacts],
    users: Mapping[str, UserFacts],
    n: int = CANDIDATES,
    num_threads: int = 0,
) -> list[tuple[dict, bool]]:
    """Labelled impressions: ALS (fitted on ``early``) top-``n`` per user who has ``late``
    events; clicked = the user read the item in ``late``."""
    model = fit_recommender(early, params, num_threads=num_threads)
    later: dict[str, set[str]] = {}
    for user, item, *_ in late:
        later.setdefault(user, set()).add(item)
    source = feature_source(early, model, items, users)
    shown = als_candidates(model, sorted(later), n)
    return [
        pair
        for user in sorted(shown)
        for pair in impression_pairs(source, user, shown[user], later[user])
    ]


def train_reranker(
    pairs: list[tuple[dict, bool]], *, epochs: int = EPOCHS, seed: int = SEED, **pipeline
) -> Reranker:
    """A fresh re-ranker that has seen every pair ``epochs`` times, shuffled by ``seed``."""
    reranker = Reranker(new_pipeline(**pipeline))
    rng = random.Random(seed)
    order = list(range(len(pairs)))
    for _ in range(epochs):
        rng.shuffle(order)
        reranker.learn_many(pairs[i] for i in order)
    return reranker


def evaluate_reranker(
    ratings: Iterable,
    *,
    films: Iterable = (),
    readers: Iterable = (),
    params: AlsParams | None = None,
    weights: Weights | None = None,
    test_fraction: float = TEST_FRACTION,
    n: int = CANDIDATES,
    k: int = K,
    epochs: int = EPOCHS,
    seed: int = SEED,
    num_threads: int = 0,
    progress: Callable[[str], None] = lambda message: None,
) -> dict:
    """``{"ndcg@10": {"reranked": .., "als": ..}, "reranker": Reranker, ...}``."""
    started = time.monotonic()
    params = params or AlsParams()
    items, users = movielens_facts(films, readers)
    events = events_from_ratings(ratings, weights)
    train, test = split_per_user_temporal(events, test_fraction)
    early, late = split_per_user_temporal(train, test_fraction)
    progress(f"labelling ALS top-{n} of {len(early):,} early events against {len(late):,} later")
    pairs = training_pairs(
        early, late, params, items=items, users=users, n=n, num_threads=num_threads
    )
    clicks = sum(clicked for _, clicked in pairs)
    progress(f"training the re-ranker on {len(pairs):,} impressions ({clicks:,} clicks)")
    reranker = train_reranker(pairs, epochs=epochs, seed=seed)

    progress("ranking the test period")
    model = fit_recommender(train, params, num_threads=num_threads)
    source = feature_source(train, model, items, users)
    lists = candidate_lists(source, als_candidates(model, {e[0] for e in test}, n))
    als_order = {u: [c.item_id for c in cs] for u, cs in lists.items()}
    reranked = {u: [i for i, _ in reranker.rerank(cs)] for u, cs in lists.items()}
    scores = {
        "reranked": _ndcg(reranked, train, test, k),
        "als": _ndcg(als_order, train, test, k),
    }
    return {
        f"ndcg@{k}": scores,
        "reranker": reranker,
        "impressions": len(pairs),
        "clicks": clicks,
        "test_users": len(lists),
        "protocol": "per_user_temporal",
        "weights": reranker.weights(),
        "seconds": round(time.monotonic() - started, 3),
    }


def _ndcg(ranked: Mapping[str, list[str]], train: list[Event], test: list[Event], k: int) -> float:
    """NDCG@k over the test users with a ranked list; held-out pairs already in ``train``
    are excluded, as in :func:`.evaluation.evaluate_split`. A test user with no list (no
    ALS factors) scores 0, so both rankers are averaged over the same users."""
    train_pairs = {(e[0], e[1]) for e in train}
    held_out = [e for e in test if (e[0], e[1]) not in train_pairs]
    users = sorted({e[0] for e in held_out})
    items = sorted({e[1] for e in held_out} | {i for r in ranked.values() for i in r})
    u_index = {u: n for n, u in enumerate(users)}
    i_index = {i: n for n, i in enumerate(items)}
    matrix = as_csr(
        scipy.sparse.coo_matrix(
            (
                np.ones(len(held_out)),
                ([u_index[e[0]] for e in held_out], [i_index[e[1]] for e in held_out]),
            ),
            shape=(len(users), len(items)),
        )
    )
    matrix.data[:] = 1.0

    def recommend(user: int) -> list[int]:
        return [i_index[i] for i in ranked.get(users[user], ())]

    return ranking_metrics(recommend, matrix, k)["ndcg"]
