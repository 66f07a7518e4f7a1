"""Load the active model from Postgres into a Recommender, and keep it fresh in memory.

Each worker holds its own copy: any worker answers for any user, because the model lives
in Postgres and a worker reloads when another version becomes active. Between retrains,
users whose history changed are folded in from their full history after each batch.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import scipy.sparse
from sqlalchemy import Engine, text

from .model import AlsParams, IdMap, Recommender, als_from_factors, as_csr, decayed_popularity
from .model_store import ModelStore, Version, histories

log = logging.getLogger(__name__)


@dataclass
class Loaded:
    version: Version
    recommender: Recommender


def recommend_for(
    loaded: Loaded, engine: Engine, user_id: str, k: int, exclude_seen: bool = True
) -> tuple[list[tuple[str, float]], str]:
    """What the HTTP API and `marquee recommend` answer: ``(items, strategy)``.

    A user newer than the model is scored from their stored history on the fly; the
    strategy says whether ALS or the popularity fallback produced the items.
    """
    rec = loaded.recommender
    history = None
    if not rec.has_factors(user_id):
        history = histories(engine, [user_id])[user_id]
    items = rec.recommend(user_id, k, exclude_seen=exclude_seen, history=history)
    personal = rec.has_factors(user_id) or rec.history_row(history or ()).nnz > 0
    return items, "als" if personal else "popularity"


def load_active(store: ModelStore, half_life_seconds: float) -> Loaded | None:
    """The active version as a ready Recommender, or ``None`` when none is active yet."""
    version = store.active()
    if version is None:
        return None
    user_ids, user_factors = store.factors(version.id, "user")
    item_ids, item_factors = store.factors(version.id, "item")
    users, items = IdMap(user_ids), IdMap(item_ids)
    params = AlsParams(**version.params)
    seen, popularity = _seen_and_popularity(store.engine, users, items, half_life_seconds)
    model = als_from_factors(user_factors, item_factors, params, num_threads=1)
    log.info("loaded model version %s (%s users, %s items)", version.id, len(users), len(items))
    return Loaded(version, Recommender(model, users, items, seen, popularity))


def _seen_and_popularity(
    engine: Engine, users: IdMap, items: IdMap, half_life_seconds: float
) -> tuple[scipy.sparse.csr_matrix, np.ndarray]:
    rows, cols, values = [], [], []
    with engine.connect() as conn:
        for user, item, confidence in conn.execute(
            text("SELECT user_id, item_id, confidence FROM user_item")
        ):
            u, i = users.get(user), items.get(item)
            if u is not None and i is not None:
                rows.append(u)
                cols.append(i)
                values.append(confidence)
        events = conn.execute(
            text("SELECT item_id, weight, extract(epoch FROM occurred_at) FROM interactions")
        ).all()
    seen = as_csr(scipy.sparse.coo_matrix((values, (rows, cols)), shape=(len(users), len(items))))
    known = [(items.get(i), w, t) for i, w, t in events if items.get(i) is not None]
    if not known:
        return seen, np.zeros(len(items))
    index, weights, times = (np.asarray(column, dtype=float) for column in zip(*known, strict=True))
    popularity = decayed_popularity(
        index.astype(np.int64),
        weights,
        times,
        n_items=len(items),
        now=float(times.max()),
        half_life_seconds=half_life_seconds,
    )
    return seen, popularity
