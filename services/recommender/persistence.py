"""The persistence seam: what serving, freshness and the worker ask of storage.

Protocols, not base classes: the Postgres adapters (``store.InteractionStore``,
``model_store.ModelStore``) implement them as they are, and the unit tests pass in-memory
ones, so fold-in, reload and serving logic runs without a database. The rows that cross
the seam are defined here, free of SQL.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

import numpy as np

from .content import ItemInfo

#: ``(the other side's id, summed confidence)``: an item of a user's history, or a user
#: of an item's.
Pair = tuple[str, float]


@dataclass(frozen=True, slots=True)
class InteractionRow:
    event_source: str
    event_id: str
    user_id: str
    item_id: str
    action: str
    weight: float
    dwell_seconds: float | None
    rating: float | None
    occurred_at: datetime
    kafka_topic: str
    kafka_partition: int
    kafka_offset: int


@dataclass(frozen=True, slots=True)
class CatalogRow:
    """A ``marquee.item.v1`` as stored, with its content vector (``None``: no encoder)."""

    item_id: str
    kind: str
    title: str
    summary: str
    body: str
    tags: tuple[str, ...]
    language: str | None
    url: str | None
    published_at: datetime
    expires_at: datetime | None
    hidden: bool
    content: np.ndarray | None
    content_model: str | None

    def entry(self) -> CatalogEntry:
        """The row as serving reads it back."""
        info = ItemInfo(
            self.title, self.kind, self.tags, self.published_at, self.expires_at, self.hidden
        )
        return CatalogEntry(self.item_id, info, self.content)


@dataclass(frozen=True, slots=True)
class CatalogEntry:
    """What serving reads back of a catalog item."""

    item_id: str
    info: ItemInfo
    content: np.ndarray | None


@dataclass(frozen=True, slots=True)
class PendingContent:
    """A catalog item whose content vector is missing or from another encoder: the text it
    is embedded from, and when its row last changed (an item changed since is left alone)."""

    item_id: str
    title: str
    tags: tuple[str, ...]
    summary: str
    updated_at: datetime


@dataclass(frozen=True)
class Confidences:
    """Every user x item confidence, column by column: ``users``/``items`` are positions
    in ``user_ids``/``item_ids``. A version's load turns 100k of them into its seen matrix
    with a few array operations; as Python tuples they held the interpreter for ~0.3 s
    while the worker served. Iterating yields ``(user_id, item_id, confidence)``."""

    user_ids: list[str]
    item_ids: list[str]
    users: np.ndarray
    items: np.ndarray
    values: np.ndarray  # float32

    @classmethod
    def of(cls, triples: Iterable[tuple[str, str, float]]) -> Confidences:
        users: dict[str, int] = {}
        items: dict[str, int] = {}
        coded = [
            (users.setdefault(u, len(users)), items.setdefault(i, len(items)), c)
            for u, i, c in triples
        ]
        columns = list(zip(*coded, strict=True)) or [(), (), ()]
        return cls(
            list(users),
            list(items),
            np.asarray(columns[0], dtype=np.int64),
            np.asarray(columns[1], dtype=np.int64),
            np.asarray(columns[2], dtype=np.float32),
        )

    def __len__(self) -> int:
        return len(self.values)

    def __iter__(self) -> Iterator[tuple[str, str, float]]:
        users, items = self.user_ids, self.item_ids
        return (
            (users[u], items[i], c)
            for u, i, c in zip(
                self.users.tolist(), self.items.tolist(), self.values.tolist(), strict=True
            )
        )


@dataclass(frozen=True)
class Version:
    id: int
    status: str
    trained_at: str
    params: dict
    metrics: dict
    n_users: int | None
    n_items: int | None
    n_interactions: int | None
    fit_seconds: float | None


@dataclass(frozen=True)
class FactorUpdate:
    side: str  # "user" or "item"
    external_id: str
    factors: np.ndarray
    updated_at: datetime


class HistoryStore(Protocol):
    """The stored interactions: the worker writes them, serving and fold-in read them
    (Postgres: ``store.InteractionStore``)."""

    def write(self, rows: list[InteractionRow]) -> int:
        """Store a batch idempotently; returns how many events were new."""
        ...

    def histories(self, user_ids: Sequence[str]) -> dict[str, list[Pair]]:
        """Each user's full history (fold-in needs it all); ``[]`` for a user with none."""
        ...

    def item_histories(self, item_ids: Sequence[str]) -> dict[str, list[Pair]]:
        """Each item's users (``partial_fit_items`` input)."""
        ...

    def item_kinds(self, item_ids: Sequence[str]) -> dict[str, str]: ...

    def ingested_since(self, since: datetime) -> tuple[set[str], set[str], datetime]:
        """Users and items of what was stored after ``since``, and the store's time just
        before they were read."""
        ...

    def confidences(self) -> Confidences:
        """Every user x item confidence: what each user has seen."""
        ...

    def popularity(self, half_life_seconds: float) -> Iterable[Pair]:
        """Each item's weight, decayed by age before the newest event."""
        ...

    def popular_within(self, window_seconds: float, k: int, kind: str | None) -> list[Pair]:
        """The k items with the most weight in the window before the newest event."""
        ...


class CatalogStore(Protocol):
    """The catalog items and their content vectors (Postgres: ``catalog_store.PostgresCatalog``)."""

    def write(self, rows: list[CatalogRow]) -> None:
        """Upsert the items, idempotently."""
        ...

    def entries(self, since: datetime | None = None) -> tuple[list[CatalogEntry], datetime]:
        """Items changed at or after ``since`` (all without), and the read's start."""
        ...

    def missing_content(self, model: str) -> list[PendingContent]:
        """Items without a content vector, or with one from an encoder other than ``model``."""
        ...

    def store_content(self, vectors: list[tuple[PendingContent, np.ndarray]], model: str) -> int:
        """Store each item's vector as ``model``'s, unless the item changed since it was
        read (the worker that stored the change embedded it); returns how many were stored."""
        ...


class FactorStore(Protocol):
    """Model versions and their factors, fold-ins included (Postgres:
    ``model_store.ModelStore``)."""

    def now(self) -> datetime:
        """The store's clock: the one that stamps fold-ins."""
        ...

    def active(self) -> Version | None: ...

    def versions(self) -> list[Version]: ...

    def training_state(self) -> tuple[int, int | None, float | None]:
        """``(interactions stored, interactions the newest version saw, its age in s)``."""
        ...

    def factors(self, version: int, side: str) -> tuple[list[str], np.ndarray]: ...

    def upsert_factors(
        self, version: int, side: str, rows: list[tuple[str, np.ndarray]]
    ) -> None: ...

    def factor_updates(self, version: int, since: datetime) -> tuple[list[FactorUpdate], datetime]:
        """Fold-ins of ``version`` written at or after ``since``, and the read's start."""
        ...
