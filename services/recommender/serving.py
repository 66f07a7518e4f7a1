"""Load the active model from storage into a Recommender, and keep it fresh in memory.

Each worker holds its own copy: any worker answers for any user, because the model lives
in Postgres and a worker reloads when another version becomes active. Between retrains,
users whose history changed are folded in from their full history after each batch.
Storage is reached through the protocols of :mod:`.persistence` only.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

import numpy as np
import scipy.sparse

from .content import RIDGE, ContentMap
from .model import AlsParams, IdMap, Recommender, als_from_factors, as_csr
from .persistence import (
    CatalogEntry,
    CatalogStore,
    Confidences,
    FactorStore,
    HistoryStore,
    Pair,
    Version,
)
from .recency import Shaping, capped_top_k

log = logging.getLogger(__name__)


@dataclass
class Loaded:
    version: Version
    recommender: Recommender
    #: Fold-ins written to Postgres from this time on are not in ``recommender`` yet.
    synced_from: datetime
    #: Interactions stored from this time on may not be folded in (see ``catch_up``).
    caught_up_to: datetime | None = None
    #: Content embedding -> factors, learned on this version's items (None: too few).
    content_map: ContentMap | None = None
    #: Catalog changes stored from this time on are not in ``recommender`` yet.
    catalog_from: datetime | None = None


def described(rec: Recommender | None, scored: list[tuple[str, float]]) -> list[dict]:
    """Items as answers show them: id and score, and the title and kind the served model
    knows (none without one)."""
    if rec is None:
        return [{"item_id": item, "score": score} for item, score in scored]
    return [
        {"item_id": item, "score": score, "title": rec.title_of(item), "kind": rec.kind_of(item)}
        for item, score in scored
    ]


Answer = tuple[list[tuple[str, float]], str]


def recommend_for(
    loaded: Loaded,
    histories: HistoryStore,
    user_id: str,
    k: int,
    exclude_seen: bool = True,
    kind: str | None = None,
    *,
    max_per_tag: int | None = None,
) -> Answer:
    """What `marquee recommend` answers: ``(items, strategy)``; see :func:`answer`."""
    history = None
    if not loaded.recommender.has_factors(user_id):
        history = histories.histories([user_id])[user_id]
    return answer(loaded, user_id, k, exclude_seen, kind, history, max_per_tag=max_per_tag)


async def recommend_async(
    loaded: Loaded,
    histories: HistoryStore,
    user_id: str,
    k: int,
    exclude_seen: bool = True,
    kind: str | None = None,
    *,
    max_per_tag: int | None = None,
) -> Answer:
    """What the HTTP API and Kafka replies answer, inside a worker: only the history read
    leaves the event loop; the model is read on it, where fold-ins change it."""
    history = None
    if not loaded.recommender.has_factors(user_id):
        history = (await asyncio.to_thread(histories.histories, [user_id]))[user_id]
    return answer(loaded, user_id, k, exclude_seen, kind, history, max_per_tag=max_per_tag)


def answer(
    loaded: Loaded,
    user_id: str,
    k: int,
    exclude_seen: bool,
    kind: str | None,
    history: list[tuple[str, float]] | None,
    *,
    max_per_tag: int | None = None,
) -> Answer:
    """A user newer than the model is scored from their stored ``history`` on the fly; the
    strategy says whether ALS or the popularity fallback produced the items. ``max_per_tag``
    None: the recommender's own cap."""
    rec = loaded.recommender
    items = rec.recommend(
        user_id, k, exclude_seen=exclude_seen, history=history, kind=kind, max_per_tag=max_per_tag
    )
    personal = rec.has_factors(user_id) or rec.history_row(history or ()).nnz > 0
    return items, "als" if personal else "popularity"


def popular_within(
    histories: HistoryStore,
    rec: Recommender | None,
    window_seconds: float,
    k: int,
    kind: str | None,
    max_per_tag: int,
) -> list[Pair]:
    """The k items read most in the window (``/items/popular?window=``), at most
    ``max_per_tag`` of one tag by the tags the served version knows (``rec``; without
    one, no item has tags to hold it back). Reads the store: call in a thread."""
    if max_per_tag <= 0 or rec is None:
        return histories.popular_within(window_seconds, k, kind)

    def tags_of(pair: Pair) -> tuple[str, ...]:
        info = rec.catalog.get(pair[0])
        return info.tags if info else ()

    def ranked(n: int) -> list[Pair]:
        return histories.popular_within(window_seconds, n, kind)

    return capped_top_k(ranked, k, tags_of, max_per_tag)


def load_active(
    histories: HistoryStore,
    factors: FactorStore,
    half_life_seconds: float,
    catalog: CatalogStore | None = None,
    max_age_seconds: dict[str, float] | None = None,
    shaping: Shaping | None = None,
) -> Loaded | None:
    """The active version as a ready Recommender, or ``None`` when none is active yet;
    with ``catalog``, its items' titles and expiry, and factors mapped from content for
    the catalog items the version has no factors for. ``shaping``: the freshness
    prior and tag cap its answers get."""
    version = factors.active()
    if version is None:
        return None
    synced_from = factors.now()
    entries, catalog_from = catalog.entries() if catalog is not None else ([], None)
    # Fold-ins of this version are rows of these tables too: they load with the rest.
    user_ids, user_factors = factors.factors(version.id, "user")
    item_ids, item_factors = factors.factors(version.id, "item")
    users, items = IdMap(user_ids), IdMap(item_ids)
    params = AlsParams(**version.params)
    seen = _seen(histories.confidences(), users, items)
    popularity = _popularity(histories.popularity(half_life_seconds), items)
    kinds = histories.item_kinds(item_ids)
    model = als_from_factors(user_factors, item_factors, params, num_threads=1)
    log.info("loaded model version %s (%s users, %s items)", version.id, len(users), len(items))
    recommender = Recommender(
        model,
        users,
        items,
        seen,
        popularity,
        [kinds.get(i, "item") for i in item_ids],
        catalog={e.item_id: e.info for e in entries},
        max_age_seconds=max_age_seconds,
        shaping=shaping,
    )
    loaded = Loaded(version, recommender, synced_from, catalog_from=catalog_from)
    loaded.content_map = fit_content_map(recommender, entries)
    adopt_catalog(recommender, loaded.content_map, entries)
    return loaded


def fit_content_map(
    rec: Recommender, entries: list[CatalogEntry], ridge: float = RIDGE
) -> ContentMap | None:
    """The map from content to factors, learned on the items that have both."""
    pairs = [
        (e.content, f)
        for e in entries
        if e.content is not None and (f := rec.factors_of("item", e.item_id)) is not None
    ]
    if not pairs:
        return None
    embeddings, item_factors = zip(*pairs, strict=True)
    return ContentMap.fit(np.stack(embeddings), np.stack(item_factors), ridge)


def adopt_catalog(
    rec: Recommender, mapping: ContentMap | None, entries: list[CatalogEntry]
) -> list[str]:
    """Take catalog items in: their names and expiry, and for those without readers'
    factors, factors mapped from their content by ``mapping``. Returns the items given
    mapped factors."""
    mapped = []
    for entry in entries:
        rec.set_info(entry.item_id, entry.info)
        if mapping is not None and entry.content is not None:
            if rec.needs_readers_factors(entry.item_id):
                rec.add_mapped(entry.item_id, mapping.factors(entry.content)[0])
                mapped.append(entry.item_id)
    return mapped


def _seen(confidences: Confidences, users: IdMap, items: IdMap) -> scipy.sparse.csr_matrix:
    """The version's users x items confidences; pairs of a user or item it lacks are left out."""
    rows = _positions(confidences.user_ids, users)[confidences.users]
    cols = _positions(confidences.item_ids, items)[confidences.items]
    keep = (rows >= 0) & (cols >= 0)
    return as_csr(
        scipy.sparse.coo_matrix(
            (confidences.values[keep], (rows[keep], cols[keep])), shape=(len(users), len(items))
        )
    )


def _positions(ids: list[str], index: IdMap) -> np.ndarray:
    """Each id's index in ``index``, -1 where it has none."""
    found = (index.get(external) for external in ids)
    return np.fromiter((-1 if i is None else i for i in found), dtype=np.int64, count=len(ids))


def _popularity(scores: Iterable[Pair], items: IdMap) -> np.ndarray:
    """Each item's decayed popularity in the model's item order (0 for one never seen)."""
    popularity = np.zeros(len(items))
    for item, score in scores:
        index = items.get(item)
        if index is not None:
            popularity[index] = score
    return popularity
