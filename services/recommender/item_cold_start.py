"""Offline quality of content-based cold start: can the served path rank items nobody read?

The ``item_cold_start`` protocol: hold out a fifth of the items entirely (every interaction
with them), train ALS on the rest, give the held-out items factors mapped from their
content exactly as a worker does (:func:`.serving.fit_content_map`, :func:`.serving.adopt_catalog`),
and rank only the held-out items for each user through ``Recommender.recommend`` (they are
a kind of their own, the way a newsroom asks for ``kind=news``). NDCG@10 and recall@10 over
the users who interacted with a held-out item, for each content representation, against a
random ranking and against content-predicted popularity (a ridge from content to how many
readers an item had, the same list for everyone), over several seeds. Pure logic: no Kafka,
no database.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence

import numpy as np
import scipy.sparse
import scipy.stats

from .confidence import Weights
from .content import RIDGE, ContentMap, ItemInfo, content_text
from .evaluation import TEST_FRACTION, K, events_from_ratings, ranking_metrics
from .interactions import Event
from .model import AlsParams, IdMap, fit_recommender
from .persistence import CatalogEntry
from .serving import adopt_catalog, fit_content_map

SEEDS = (0, 1, 2)
#: The kind the held-out items are served as: ranked among themselves only.
NEW = "held-out"


def movielens_texts(films: Iterable) -> dict[str, str]:
    """Each film's text as a worker embeds it from the film's catalog event."""
    from shared.data.movielens import to_item_event

    texts = {}
    for film in films:
        item = to_item_event(film).data
        texts[film.item_id] = content_text(item.title, item.tags, item.summary)
    return texts


def movielens_vectors(encoder, films: Iterable) -> dict:
    """``{"model", "ids", "vectors": {"minilm": ..., "tfidf": ...}, "items_per_second"}``:
    the films represented both ways, the served encoder first (the default)."""
    texts = movielens_texts(films)
    started = time.monotonic()
    embedded = encoder.encode(list(texts.values()))
    seconds = time.monotonic() - started
    return {
        "model": encoder.name,
        "ids": list(texts),
        "vectors": {"minilm": embedded, "tfidf": tfidf(list(texts.values()))},
        "items_per_second": round(len(texts) / seconds, 1),
    }


def tfidf(texts: list[str]) -> np.ndarray:
    """TF-IDF over the texts (fitted on all of them: the catalog's vocabulary), unit rows."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    vectorizer = TfidfVectorizer(sublinear_tf=True, ngram_range=(1, 2), min_df=2)
    return vectorizer.fit_transform(texts).toarray().astype(np.float32)


def split_items(
    events: Sequence[Event], fraction: float = TEST_FRACTION, seed: int = 0
) -> tuple[list[Event], list[Event], set[str]]:
    """``(train, test, held-out items)``: a random ``fraction`` of the items, every event
    with one of them in ``test``."""
    items = sorted({e[1] for e in events})
    rng = np.random.default_rng(seed)
    held = set(rng.choice(items, size=round(len(items) * fraction), replace=False).tolist())
    train = [e for e in events if e[1] not in held]
    test = [e for e in events if e[1] in held]
    return train, test, held


def _summary(values: list[float]) -> dict:
    """Mean with a 95% t-interval over the seeds."""
    mean = float(np.mean(values))
    half = 0.0
    if len(values) > 1:
        sem = float(np.std(values, ddof=1)) / np.sqrt(len(values))
        half = float(scipy.stats.t.ppf(0.975, len(values) - 1) * sem)
    return {"mean": mean, "ci95": half, "seeds": [float(v) for v in values]}


def evaluate_seed(
    events: Sequence[Event],
    ids: Sequence[str],
    vectors: Mapping[str, np.ndarray],
    params: AlsParams,
    *,
    seed: int,
    k: int = K,
    ridge: float = RIDGE,
    num_threads: int = 0,
) -> dict:
    """One split: ``{model: {"ndcg@k", "recall@k"}}`` for each representation in ``vectors``
    (rows aligned with ``ids``), ``random`` and ``content_popularity``."""
    train, test, held = split_items(events, seed=seed)
    row_of = {item: i for i, item in enumerate(ids)}
    results: dict[str, dict[str, float]] = {}
    test_users = sorted({e[0] for e in test})
    candidates = sorted(held & set(ids))

    def scored(recommend: Callable[[str], list[str]]) -> dict[str, float]:
        users, items = IdMap(test_users), IdMap(candidates)
        relevant = [(users.get(e[0]), items.get(e[1])) for e in test if e[1] in items]
        rows, cols = zip(*relevant, strict=True)
        matrix = scipy.sparse.csr_matrix(
            (np.ones(len(rows)), (rows, cols)), shape=(len(users), len(items))
        )
        matrix.data[:] = 1.0

        def indices(user: int) -> list[int]:
            return [items.get(i) for i in recommend(users.external(user)) if i in items]

        metrics = ranking_metrics(indices, matrix, k)
        return {f"ndcg@{k}": metrics["ndcg"], f"recall@{k}": metrics["recall"]}

    def served_with(matrix: np.ndarray) -> Callable[[str], list[str]]:
        served = fit_recommender(train, params, num_threads=num_threads)
        entries = [
            CatalogEntry(
                item, ItemInfo(item, NEW if item in held else "item"), matrix[row_of[item]]
            )
            for item in ids
        ]
        adopt_catalog(served, fit_content_map(served, entries, ridge), entries)
        return lambda user: [i for i, _ in served.recommend(user, k, kind=NEW)]

    for name, matrix in vectors.items():
        results[name] = scored(served_with(matrix))

    rng = np.random.default_rng(seed)
    results["random"] = scored(lambda user: rng.permutation(candidates)[:k].tolist())

    # Content-predicted popularity: the default representation, a ridge onto readers' counts.
    default = next(iter(vectors.values()))
    readers = Counter(item for _, item in {(e[0], e[1]) for e in train})
    known = [i for i in ids if i in readers]
    mapping = ContentMap.fit(
        default[[row_of[i] for i in known]],
        np.log1p([[readers[i]] for i in known]),
        ridge,
    )
    predicted = mapping.factors(default[[row_of[i] for i in candidates]])[:, 0]
    ranked = [candidates[i] for i in np.argsort(-predicted, kind="stable")[:k]]
    results["content_popularity"] = scored(lambda user: ranked)
    return {
        "models": results,
        "held_out_items": len(held),
        "test_users": len(test_users),
        "n_train": len(train),
        "n_test": len(test),
    }


def evaluate_item_cold_start(
    ratings: Iterable,
    ids: Sequence[str],
    vectors: Mapping[str, np.ndarray],
    params: AlsParams | None = None,
    *,
    weights: Weights | None = None,
    seeds: Sequence[int] = SEEDS,
    k: int = K,
    ridge: float = RIDGE,
    num_threads: int = 0,
    progress: Callable[[str], None] = lambda message: None,
) -> dict:
    """``{"models": {name: {"ndcg@k"|"recall@k": {"mean", "ci95", "seeds"}}}, ...}`` for each
    representation in ``vectors`` (rows aligned with ``ids``), ``random`` and
    ``content_popularity``; the first representation is the served default (it also
    predicts popularity for the ``content_popularity`` baseline)."""
    params = params or AlsParams()
    events = events_from_ratings(ratings, weights)
    started = time.monotonic()
    per_seed = []
    for seed in seeds:
        progress(f"item_cold_start: seed {seed}")
        per_seed.append(
            evaluate_seed(
                events, ids, vectors, params, seed=seed, k=k, ridge=ridge, num_threads=num_threads
            )
        )
    models = {
        name: {
            metric: _summary([run["models"][name][metric] for run in per_seed])
            for metric in (f"ndcg@{k}", f"recall@{k}")
        }
        for name in per_seed[0]["models"]
    }
    first, default = per_seed[0], next(iter(vectors))
    metric = f"ndcg@{k}"
    # Seeds share their splits across models: the paired difference is the sharper test.
    paired = {
        name: _summary(
            [run["models"][default][metric] - run["models"][name][metric] for run in per_seed]
        )
        for name in models
        if name != default
    }
    return {
        "models": models,
        f"{default}_minus": {metric: paired},
        "default": default,
        "seeds": list(seeds),
        "ridge": ridge,
        "dimensions": {name: int(v.shape[1]) for name, v in vectors.items()},
        "held_out_items": first["held_out_items"],
        "test_users": first["test_users"],
        "params": {"factors": params.factors, "regularization": params.regularization},
        "seconds": round(time.monotonic() - started, 3),
    }
