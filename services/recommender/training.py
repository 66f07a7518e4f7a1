"""Retrain: load interactions, check quality against popularity, store, maybe activate.

Every retrain is judged on a held-out split (each user's last 20% of events) against a
popularity baseline computed in the same run; only a model that passes the gate becomes
active. The factors then written are fitted on all events, so nothing is left unused.

Before it, ``marquee train`` gives every catalog item the current encoder's content vector
(:func:`embed_catalog`): workers learn a version's content map when they load it, from the
items that have both, so an item stored while a worker had no encoder, or embedded by an
older one, counts from this version on.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np

from shared.errors import ConfigurationError

from .content import content_text
from .evaluation import evaluate_split, split_per_user_temporal
from .model import AlsParams, blas_single_thread, fit_recommender
from .model_store import ModelStore
from .persistence import CatalogStore

log = logging.getLogger(__name__)

METRICS = ("precision@10", "ndcg@10")
#: Items per encoder call and per transaction in :func:`embed_catalog` (the encoder's own
#: batch: larger ones pad more and gain nothing on 2 cores).
EMBED_BATCH = 64


@dataclass(frozen=True)
class Outcome:
    status: str  # "active", "rejected", "evaluated" (evaluate-only) or "skipped" (not due)
    version: int | None
    metrics: dict
    passed: bool
    fit_seconds: float | None


def passes_gate(models: dict, ratio: float) -> bool:
    served, popular = models["served"], models["popularity"]
    return all(served[m] >= ratio * popular[m] for m in METRICS)


def retrain(
    store: ModelStore,
    params: AlsParams,
    *,
    gate_ratio: float = 1.0,
    keep: int = 3,
    evaluate_only: bool = False,
    due: Callable[[], str | None] | None = None,
    num_threads: int = 0,
) -> Outcome:
    """``due``, if given, is asked again once the lock is held: a worker that decided to
    retrain just before another one's retrain finished finds it no longer due, and skips.
    ``num_threads``: implicit's threads for the fits (0: one per core)."""
    with store.training_lock():
        if due is not None and due() is None:
            return Outcome("skipped", None, {}, False, None)
        events, read_at = store.events()
        if len(events) < 10:
            raise ConfigurationError(
                f"only {len(events)} interactions stored; publish some before training"
            )
        train, test = split_per_user_temporal(events)
        with blas_single_thread():
            scores = evaluate_split(train, test, params, num_threads=num_threads)
        models = scores["models"]
        passed = passes_gate(models, gate_ratio)
        metrics = {
            "holdout": models,
            "gate_ratio": gate_ratio,
            "passed": passed,
            # Workers fold in what arrived after this when they load the version.
            "data_until": read_at.isoformat(),
        }
        if evaluate_only:
            return Outcome("evaluated", None, metrics, passed, None)

        started = time.perf_counter()
        recommender = fit_recommender(events, params, num_threads=num_threads)
        fit_seconds = time.perf_counter() - started
        version = store.save(
            status="candidate",
            params=asdict(params),
            metrics=metrics,
            users=list(recommender.users),
            items=list(recommender.items),
            user_factors=recommender.user_factors,
            item_factors=recommender.item_factors,
            n_interactions=len(events),
            fit_seconds=fit_seconds,
        )
        if passed:
            store.activate(version)
        else:
            store.reject(version)
            log.warning("model version %s rejected by the quality gate: %s", version, models)
        store.prune(keep)
        return Outcome("active" if passed else "rejected", version, metrics, passed, fit_seconds)


def embed_catalog(
    catalog: CatalogStore,
    encode: Callable[[list[str]], np.ndarray],
    model: str,
    *,
    batch_size: int = EMBED_BATCH,
    progress: Callable[[int, int], None] | None = None,
) -> int:
    """Embed, with ``encode`` (texts -> unit vectors, the encoder named ``model``), every
    catalog item whose content vector is missing or from another encoder, ``batch_size``
    at a time, each batch stored before the next is encoded; items already embedded by
    ``model`` are left as they are. ``progress(done, total)`` after each batch. Returns
    how many vectors were stored (an item changed meanwhile keeps the change's)."""
    pending = catalog.missing_content(model)
    stored = 0
    for start in range(0, len(pending), batch_size):
        batch = pending[start : start + batch_size]
        vectors = encode([content_text(p.title, p.tags, p.summary) for p in batch])
        stored += catalog.store_content(list(zip(batch, vectors, strict=True)), model)
        if progress is not None:
            progress(start + len(batch), len(pending))
    if pending:
        log.info("embedded %s of %s catalog items with %s", stored, len(pending), model)
    return stored
