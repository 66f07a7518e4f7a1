"""In-memory stores behind the persistence protocols, and a small trained model to serve.

They follow the Postgres adapters' contracts (idempotent writes, confidences summed per
user x item, fold-ins stamped by the store's clock, trained rows never read back as
fold-ins), so freshness, serving and the worker run here exactly as they do on Postgres.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import asdict, replace
from datetime import UTC, datetime, timedelta

import numpy as np

from services.recommender.model import AlsParams, fit_recommender
from services.recommender.persistence import (
    CatalogEntry,
    CatalogRow,
    Confidences,
    FactorUpdate,
    InteractionRow,
    Pair,
    PendingContent,
    Version,
)

PARAMS = AlsParams(factors=4, regularization=0.1, iterations=8)
START = datetime(2024, 1, 1, tzinfo=UTC)


class Clock:
    """The database's clock: each reading 10 s after the previous one, so the 3 s that
    freshness re-reads for late commits (``COMMIT_SLACK``) reach back less than a reading."""

    def __init__(self) -> None:
        self.time = START

    def now(self) -> datetime:
        self.time += timedelta(seconds=10)
        return self.time


def row(user: str, item: str, weight: float = 2.0, *, event: str | None = None) -> InteractionRow:
    return InteractionRow(
        event_source="urn:test",
        event_id=event or f"{user}-{item}",
        user_id=user,
        item_id=item,
        action="click",
        weight=weight,
        dwell_seconds=None,
        rating=None,
        occurred_at=START,
        kafka_topic="interactions",
        kafka_partition=0,
        kafka_offset=0,
    )


class MemoryHistories:
    """:class:`~services.recommender.persistence.HistoryStore` in memory."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.events: dict[tuple[str, str], InteractionRow] = {}
        self.confidence: dict[tuple[str, str], float] = defaultdict(float)
        self.kinds: dict[str, str] = {}
        self.stored_at: list[tuple[datetime, str, str]] = []
        self.writes = 0

    def write(self, rows: list[InteractionRow]) -> int:
        self.writes += 1
        new = 0
        for r in rows:
            key = (r.event_source, r.event_id)
            if key in self.events:
                continue
            self.events[key] = r
            self.confidence[r.user_id, r.item_id] += r.weight
            self.kinds.setdefault(r.item_id, "item")
            self.stored_at.append((self.clock.now(), r.user_id, r.item_id))
            new += 1
        return new

    def histories(self, user_ids) -> dict[str, list[Pair]]:
        return self._pairs(user_ids, side=0)

    def item_histories(self, item_ids) -> dict[str, list[Pair]]:
        return self._pairs(item_ids, side=1)

    def _pairs(self, ids, side: int) -> dict[str, list[Pair]]:
        found: dict[str, list[Pair]] = {i: [] for i in ids}
        for pair, c in self.confidence.items():
            if pair[side] in found:
                found[pair[side]].append((pair[1 - side], c))
        return found

    def item_kinds(self, item_ids) -> dict[str, str]:
        return {i: self.kinds[i] for i in item_ids if i in self.kinds}

    def ingested_since(self, since: datetime) -> tuple[set[str], set[str], datetime]:
        read_at = self.clock.now()
        recent = [(u, i) for t, u, i in self.stored_at if t >= since]
        return {u for u, _ in recent}, {i for _, i in recent}, read_at

    def confidences(self) -> Confidences:
        return Confidences.of((u, i, c) for (u, i), c in self.confidence.items())

    def popularity(self, half_life_seconds: float) -> list[Pair]:
        totals: dict[str, float] = defaultdict(float)
        for r in self.events.values():  # one timestamp for all: no decay between them
            totals[r.item_id] += r.weight
        return list(totals.items())

    def popular_within(self, window_seconds: float, k: int, kind: str | None = None):
        scored = [(i, s) for i, s in self.popularity(0) if kind is None or self.kinds[i] == kind]
        return sorted(scored, key=lambda p: (-p[1], p[0]))[:k]


class MemoryCatalog:
    """:class:`~services.recommender.persistence.CatalogStore` in memory."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.rows: dict[str, tuple[CatalogRow, datetime]] = {}
        #: How many full reads (``entries()`` without ``since``) were made.
        self.full_reads = 0

    def write(self, rows: list[CatalogRow]) -> None:
        for r in rows:
            old = self.rows.get(r.item_id)
            if r.content is None and old is not None:  # the upsert keeps a stored vector
                r = replace(r, content=old[0].content, content_model=old[0].content_model)
            self.rows[r.item_id] = (r, self.clock.now())

    def entries(self, since: datetime | None = None) -> tuple[list[CatalogEntry], datetime]:
        read_at = self.clock.now()
        self.full_reads += since is None
        found = [r.entry() for r, at in self.rows.values() if since is None or at >= since]
        return sorted(found, key=lambda e: e.item_id), read_at

    def missing_content(self, model: str) -> list[PendingContent]:
        return [
            PendingContent(r.item_id, r.title, r.tags, r.summary, at)
            for r, at in sorted(self.rows.values(), key=lambda pair: pair[0].item_id)
            if r.content is None or r.content_model != model
        ]

    def store_content(self, vectors, model: str) -> int:
        stored = 0
        for pending, vector in vectors:
            r, at = self.rows[pending.item_id]
            if at == pending.updated_at:
                self.rows[r.item_id] = (
                    replace(r, content=vector, content_model=model),
                    self.clock.now(),
                )
                stored += 1
        return stored


def item_row(
    item_id: str, title: str, content=None, *, model: str | None = None, **extra
) -> CatalogRow:
    """A catalog row as the worker stores it (``content`` None: stored without an encoder)."""
    fields = dict(
        item_id=item_id, kind="article", title=title, summary="", body="", tags=(),
        language=None, url=None, published_at=START, expires_at=None, hidden=False,
        content=content, content_model=model if content is not None else None,
    )  # fmt: skip
    return CatalogRow(**fields | extra)


class MemoryModels:
    """:class:`~services.recommender.persistence.FactorStore` in memory."""

    def __init__(self, clock: Clock, interactions: MemoryHistories) -> None:
        self.clock = clock
        self.interactions = interactions
        self._versions: list[Version] = []
        self._trained: dict[int, datetime] = {}
        #: (version, side) -> external id -> (factors, written at)
        self.rows: dict[tuple[int, str], dict[str, tuple[np.ndarray, datetime]]] = {}
        self.loads = 0  # how often a version's factors were read (a reload)

    def add(self, recommender, *, status: str = "active", metrics: dict | None = None) -> int:
        """Store a trained ``recommender`` as a new version (and activate it, by default)."""
        version = len(self._versions) + 1
        at = self.clock.now()
        if status == "active":
            self._versions = [
                v if v.status != "active" else Version(**(asdict(v) | {"status": "retired"}))
                for v in self._versions
            ]
        self._versions.append(
            Version(
                id=version,
                status=status,
                trained_at=at.isoformat(),
                params=asdict(PARAMS),
                metrics={"data_until": at.isoformat()} | (metrics or {}),
                n_users=len(recommender.users),
                n_items=len(recommender.items),
                n_interactions=len(self.interactions.events),
                fit_seconds=0.0,
            )
        )
        self._trained[version] = at
        for side, ids, factors in (
            ("user", recommender.users, recommender.user_factors),
            ("item", recommender.items, recommender.item_factors),
        ):
            self.rows[version, side] = {e: (factors[n].copy(), at) for n, e in enumerate(ids)}
        return version

    def now(self) -> datetime:
        return self.clock.now()

    def active(self) -> Version | None:
        return next((v for v in self._versions if v.status == "active"), None)

    def versions(self) -> list[Version]:
        return self._versions[::-1]

    def training_state(self) -> tuple[int, int | None, float | None]:
        stored = len(self.interactions.events)
        if not self._versions:
            return stored, None, None
        return stored, self._versions[-1].n_interactions, 60.0

    def factors(self, version: int, side: str) -> tuple[list[str], np.ndarray]:
        self.loads += side == "user"
        rows = self.rows[version, side]
        return list(rows), np.asarray([f for f, _ in rows.values()], dtype=np.float32)

    def upsert_factors(self, version: int, side: str, rows) -> None:
        at = self.clock.now()
        for external, factors in rows:
            self.rows[version, side][external] = (np.asarray(factors).copy(), at)

    def factor_updates(self, version: int, since: datetime):
        read_at = self.clock.now()
        trained = self._trained[version]
        found = [
            FactorUpdate(side, external, factors.copy(), at)
            for side in ("user", "item")
            for external, (factors, at) in self.rows[version, side].items()
            if at >= since and at > trained
        ]
        return found, read_at


#: Two tastes: users a* read items x*, users b* read items y*.
TASTES = {
    **{f"a{n}": ["x1", "x2", "x3", "x4"][: 2 + n % 3] for n in range(6)},
    **{f"b{n}": ["y1", "y2", "y3", "y4"][: 2 + n % 3] for n in range(6)},
}


def empty() -> tuple[MemoryHistories, MemoryModels]:
    """Stores on one clock, holding nothing yet."""
    clock = Clock()
    interactions = MemoryHistories(clock)
    return interactions, MemoryModels(clock, interactions)


def taste_clicks() -> list[InteractionRow]:
    return [row(u, i) for u, items in TASTES.items() for i in items]


def seeded() -> tuple[MemoryHistories, MemoryModels]:
    """Stores holding TASTES' clicks and one active version trained on them."""
    interactions, models = empty()
    interactions.write(taste_clicks())
    models.add(train(interactions))
    return interactions, models


def train(interactions: MemoryHistories):
    events = [(u, i, c, 0.0) for u, i, c in interactions.confidences()]
    return fit_recommender(events, PARAMS, num_threads=1)
