"""Offline quality: bare ALS, popularity and the served recommender on held-out interactions.

Two temporal protocols (``per_user_temporal``: each user's last events are held out;
``global_temporal``: the last events of all, so most test users are new). Metrics are
``implicit.evaluation.ranking_metrics_at_k``'s, at K=10 with training items excluded:
precision is micro-averaged, ``hits / sum(min(K, relevant))`` over test users, and NDCG is
the mean over test users with the ideal DCG taken over ``min(K, relevant)`` positions.
``als`` and ``popularity`` go through implicit's own function; ``served`` calls
``Recommender.recommend`` per user (fold-in and cold start included), scored by
:func:`ranking_metrics`, a transcription of implicit's that a test holds to it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict

import numpy as np
import scipy.sparse
from implicit.evaluation import ranking_metrics_at_k

from .confidence import Weights
from .content import ItemInfo
from .interactions import Event
from .model import (
    DEFAULT_HALF_LIFE_SECONDS,
    AlsParams,
    IdMap,
    Recommender,
    als_from_factors,
    as_csr,
    blas_single_thread,
    fit_recommender,
    new_als,
)
from .persistence import CatalogEntry
from .serving import adopt_catalog, fit_content_map

K = 10
TEST_FRACTION = 0.2


def events_from_ratings(ratings: Iterable, weights: Weights | None = None) -> list[Event]:
    """Every rating is an interaction: 4-5 stars a like, the rest a view (as the replay sends them)."""
    weights = weights or Weights()
    return [
        (r.user_id, r.item_id, weights.like if r.rating >= 4 else weights.view, r.timestamp)
        for r in ratings
    ]


def _by_time(events: Iterable[Event]) -> list[Event]:
    return sorted(events, key=lambda e: e[3])  # stable: equal times keep the caller's order


def split_per_user_temporal(
    events: Iterable[Event], test_fraction: float = TEST_FRACTION
) -> tuple[list[Event], list[Event]]:
    """Each user's last ``round(n * test_fraction)`` events (by time) are held out."""
    events = _by_time(events)
    counts: dict[str, int] = {}
    for e in events:
        counts[e[0]] = counts.get(e[0], 0) + 1
    seen: dict[str, int] = {}
    train, test = [], []
    for e in events:
        n = seen[e[0]] = seen.get(e[0], 0) + 1
        held_out = round(counts[e[0]] * test_fraction)
        (test if n > counts[e[0]] - held_out else train).append(e)
    return train, test


def split_global_temporal(
    events: Iterable[Event], test_fraction: float = TEST_FRACTION
) -> tuple[list[Event], list[Event]]:
    """The last ``test_fraction`` of all events (by time) are held out."""
    events = _by_time(events)
    cut = len(events) - round(len(events) * test_fraction)
    return events[:cut], events[cut:]


PROTOCOLS: dict[str, Callable[..., tuple[list[Event], list[Event]]]] = {
    "per_user_temporal": split_per_user_temporal,
    "global_temporal": split_global_temporal,
}


def ranking_metrics(
    recommend: Callable[[int], Sequence[int]], test: scipy.sparse.csr_matrix, k: int = K
) -> dict[str, float]:
    """Precision and NDCG at k exactly as ``implicit.evaluation.ranking_metrics_at_k`` defines
    them, for any recommender: ``recommend(user_index)`` returns item indices, best first.
    Recall is the mean over test users of hits / relevant items (uncapped)."""
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    ideal = np.cumsum(discounts)
    hits = relevant = ndcg = recall = 0.0
    users = 0
    for user in np.flatnonzero(np.diff(test.indptr)):
        likes = set(test.indices[test.indptr[user] : test.indptr[user + 1]].tolist())
        n = min(k, len(likes))
        relevant += n
        found = 0
        for rank, item in enumerate(list(recommend(int(user)))[:k]):
            if item in likes:
                found += 1
                ndcg += discounts[rank] / ideal[n - 1]
        hits += found
        recall += found / len(likes)
        users += 1
    if not users:
        return {"precision": 0.0, "ndcg": 0.0, "recall": 0.0}
    return {
        "precision": float(hits / relevant),
        "ndcg": float(ndcg / users),
        "recall": float(recall / users),
    }


def popularity_model(train: scipy.sparse.csr_matrix):
    """Most-popular as an implicit model (one factor: users 1, items their user count), so it
    is scored by implicit's own metrics like ALS is."""
    model = new_als(AlsParams(factors=1))
    model.user_factors = np.ones((train.shape[0], 1), dtype=np.float32)
    counts = np.bincount(train.indices, minlength=train.shape[1]).astype(np.float32)
    model.item_factors = counts[:, None]
    return model


def _pad_rows(factors: np.ndarray, rows: int) -> np.ndarray:
    # Users or items the training split never saw have no factors: implicit would score
    # them with a row of zeros.
    missing = rows - factors.shape[0]
    return np.vstack([factors, np.zeros((missing, factors.shape[1]), factors.dtype)])


def _implicit_metrics(model, train, test, k: int) -> dict[str, float]:
    with blas_single_thread():
        result = ranking_metrics_at_k(model, train, test, K=k, show_progress=False)
    return {"precision": float(result["precision"]), "ndcg": float(result["ndcg"])}


def evaluate_split(
    train: list[Event],
    test: list[Event],
    params: AlsParams,
    *,
    k: int = K,
    half_life_seconds: float = DEFAULT_HALF_LIFE_SECONDS,
    num_threads: int = 0,
    content: Mapping[str, np.ndarray] | None = None,
) -> dict:
    """Fit on ``train``; score als, popularity and served on ``test`` (and, given items'
    ``content`` vectors, the served path with content-mapped factors: ``hybrid``)."""
    # Popularity decays from the end of the training data: "now" at serving time.
    served: Recommender = fit_recommender(
        train, params, half_life_seconds=half_life_seconds, num_threads=num_threads
    )
    # Extending copies of the served maps keeps their indices: one index space for all models.
    users, items = IdMap(served.users), IdMap(served.items)
    train_pairs = {(e[0], e[1]) for e in train}
    # A pair the user already has is excluded from every ranking: it cannot be predicted.
    held_out = [e for e in test if (e[0], e[1]) not in train_pairs]
    test_rows = [users.add(e[0]) for e in held_out]
    test_cols = [items.add(e[1]) for e in held_out]
    shape = (len(users), len(items))
    train_matrix = as_csr(
        scipy.sparse.coo_matrix(
            (
                [e[2] for e in train],
                ([users.get(e[0]) for e in train], [items.get(e[1]) for e in train]),
            ),
            shape=shape,
        )
    )
    test_matrix = as_csr(
        scipy.sparse.coo_matrix((np.ones(len(held_out)), (test_rows, test_cols)), shape=shape)
    )
    test_matrix.data[:] = 1.0  # relevance is binary; repeated pairs must not weigh more

    bare = als_from_factors(
        _pad_rows(served.user_factors, shape[0]),
        _pad_rows(served.item_factors, shape[1]),
        params,
        num_threads=num_threads,
    )

    def served_indices(user: int) -> list[int]:
        return [items.get(i) for i, _ in served.recommend(users.external(user), k)]

    models = {
        "als": _implicit_metrics(bare, train_matrix, test_matrix, k),
        "popularity": _implicit_metrics(
            popularity_model(train_matrix), train_matrix, test_matrix, k
        ),
        "served": ranking_metrics(served_indices, test_matrix, k),
    }
    if content is not None:
        # The hybrid: every item with content and no factors gets them from its content,
        # as a worker serving the catalog does (items first seen in the test split too).
        entries = [CatalogEntry(i, ItemInfo(None, "item"), v) for i, v in content.items()]
        adopt_catalog(served, fit_content_map(served, entries), entries)
        models["hybrid"] = ranking_metrics(served_indices, test_matrix, k)
    test_users = [users.external(u) for u in np.flatnonzero(np.diff(test_matrix.indptr))]
    return {
        "models": {
            name: {f"precision@{k}": m["precision"], f"ndcg@{k}": m["ndcg"]}
            for name, m in models.items()
        },
        "n_train": len(train),
        "n_test": len(held_out),
        "test_users": len(test_users),
        "cold_test_users": sum(not served.has_factors(u) for u in test_users),
    }


def evaluate(
    ratings: Iterable,
    params: AlsParams | None = None,
    *,
    protocols: Iterable[str] = tuple(PROTOCOLS),
    weights: Weights | None = None,
    test_fraction: float = TEST_FRACTION,
    k: int = K,
    half_life_seconds: float = DEFAULT_HALF_LIFE_SECONDS,
    num_threads: int = 0,
    content: Mapping[str, np.ndarray] | None = None,
    progress: Callable[[str], None] = lambda message: None,
) -> dict:
    """``{"protocols": {name: {"models": {"als"|"popularity"|"served": {metric: value}}, ...}}}``
    (and ``"hybrid"`` given ``content``, see :func:`evaluate_split`)."""
    params = params or AlsParams()
    events = events_from_ratings(ratings, weights)
    result: dict = {"protocols": {}}
    for name in protocols:
        if name not in PROTOCOLS:
            raise ValueError(f"unknown protocol {name!r}; known: {', '.join(PROTOCOLS)}")
        started = time.monotonic()
        train, test = PROTOCOLS[name](events, test_fraction)
        progress(f"{name}: training on {len(train):,} events, testing on {len(test):,}")
        scores = evaluate_split(
            train,
            test,
            params,
            k=k,
            half_life_seconds=half_life_seconds,
            num_threads=num_threads,
            content=content,
        )
        scores["params"] = asdict(params)
        scores["seconds"] = round(time.monotonic() - started, 3)
        progress(f"{name}: done in {scores['seconds']:.1f} s")
        result["protocols"][name] = scores
    return result
