"""Load the active model from Postgres into a Recommender, and keep it fresh in memory.

Each worker holds its own copy: any worker answers for any user, because the model lives
in Postgres and a worker reloads when another version becomes active. Between retrains,
users whose history changed are folded in from their full history after each batch.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import datetime

import numpy as np
import scipy.sparse
from sqlalchemy import Engine, text

from .model import AlsParams, IdMap, Recommender, als_from_factors, as_csr
from .model_store import ModelStore, Version, histories, item_kinds

log = logging.getLogger(__name__)


@dataclass
class Loaded:
    version: Version
    recommender: Recommender
    #: Fold-ins written to Postgres from this time on are not in ``recommender`` yet.
    synced_from: datetime
    #: Interactions stored from this time on may not be folded in (see ``catch_up``).
    caught_up_to: datetime | None = None


Answer = tuple[list[tuple[str, float]], str]


def recommend_for(
    loaded: Loaded,
    engine: Engine,
    user_id: str,
    k: int,
    exclude_seen: bool = True,
    kind: str | None = None,
) -> Answer:
    """What `marquee recommend` answers: ``(items, strategy)``; see :func:`answer`."""
    history = None
    if not loaded.recommender.has_factors(user_id):
        history = histories(engine, [user_id])[user_id]
    return answer(loaded, user_id, k, exclude_seen, kind, history)


async def recommend_async(
    loaded: Loaded,
    engine: Engine,
    user_id: str,
    k: int,
    exclude_seen: bool = True,
    kind: str | None = None,
) -> Answer:
    """What the HTTP API and Kafka replies answer, inside a worker: only the history read
    leaves the event loop; the model is read on it, where fold-ins change it."""
    history = None
    if not loaded.recommender.has_factors(user_id):
        history = (await asyncio.to_thread(histories, engine, [user_id]))[user_id]
    return answer(loaded, user_id, k, exclude_seen, kind, history)


def answer(
    loaded: Loaded,
    user_id: str,
    k: int,
    exclude_seen: bool,
    kind: str | None,
    history: list[tuple[str, float]] | None,
) -> Answer:
    """A user newer than the model is scored from their stored ``history`` on the fly; the
    strategy says whether ALS or the popularity fallback produced the items."""
    rec = loaded.recommender
    items = rec.recommend(user_id, k, exclude_seen=exclude_seen, history=history, kind=kind)
    personal = rec.has_factors(user_id) or rec.history_row(history or ()).nnz > 0
    return items, "als" if personal else "popularity"


def load_active(store: ModelStore, half_life_seconds: float) -> Loaded | None:
    """The active version as a ready Recommender, or ``None`` when none is active yet."""
    version = store.active()
    if version is None:
        return None
    with store.engine.connect() as conn:
        synced_from = conn.execute(text("SELECT clock_timestamp()")).scalar_one()
    # Fold-ins of this version are rows of these tables too: they load with the rest.
    user_ids, user_factors = store.factors(version.id, "user")
    item_ids, item_factors = store.factors(version.id, "item")
    users, items = IdMap(user_ids), IdMap(item_ids)
    params = AlsParams(**version.params)
    seen = _seen(store.engine, users, items)
    popularity = _popularity(store.engine, items, half_life_seconds)
    kinds = item_kinds(store.engine, item_ids)
    model = als_from_factors(user_factors, item_factors, params, num_threads=1)
    log.info("loaded model version %s (%s users, %s items)", version.id, len(users), len(items))
    recommender = Recommender(
        model, users, items, seen, popularity, [kinds.get(i, "item") for i in item_ids]
    )
    return Loaded(version, recommender, synced_from)


def _seen(engine: Engine, users: IdMap, items: IdMap) -> scipy.sparse.csr_matrix:
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
    return as_csr(scipy.sparse.coo_matrix((values, (rows, cols)), shape=(len(users), len(items))))


def _popularity(engine: Engine, items: IdMap, half_life_seconds: float) -> np.ndarray:
    """Time-decayed popularity per item, anchored at the newest event (see
    :func:`decayed_popularity`), summed in Postgres so only one row per item travels."""
    popularity = np.zeros(len(items))
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                # 0.5 ** (age / half_life), floored where float8 would underflow (an error).
                "SELECT item_id, sum(weight * exp(greatest(-700.0, -ln(2.0) * CAST(extract("
                "epoch FROM (SELECT max(occurred_at) FROM interactions) - occurred_at)"
                " AS float8) / :half_life)))"
                " FROM interactions GROUP BY item_id"
            ),
            {"half_life": half_life_seconds},
        )
        for item, score in rows:
            index = items.get(item)
            if index is not None:
                popularity[index] = float(score)
    return popularity


def popular_within(
    engine: Engine, window_seconds: float, k: int, kind: str | None = None
) -> list[tuple[str, float]]:
    """The k items with the most interaction weight in the last ``window_seconds`` before the
    newest event (a replay of old data has a "last hour" too), best first."""
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT i.item_id, sum(i.weight) AS score FROM interactions i"
                " JOIN items USING (item_id)"
                " WHERE i.occurred_at >= (SELECT max(occurred_at) FROM interactions)"
                "   - make_interval(secs => :window)"
                " AND (CAST(:kind AS text) IS NULL OR items.kind = :kind)"
                " GROUP BY i.item_id ORDER BY score DESC, i.item_id LIMIT :k"
            ),
            {"window": window_seconds, "k": k, "kind": kind},
        )
        return [(item, float(score)) for item, score in rows]
