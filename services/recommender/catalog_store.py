"""Postgres adapter for the catalog: items as the newsroom published them, with their
content vectors (implements :class:`~.persistence.CatalogStore`).

An item event upserts its row whole (the ``catalog`` topic is keyed by item, so one
item's versions arrive in order); ``updated_at`` is the database's clock, so every
worker finds what changed since its last look, whoever stored it.
"""

from __future__ import annotations

from datetime import datetime

import numpy as np
from sqlalchemy import Engine, text

from .content import ItemInfo
from .persistence import CatalogEntry, CatalogRow, PendingContent

_UPSERT = text(
    """
    INSERT INTO items AS i (item_id, kind, title, summary, body, tags, language, url,
        published_at, expires_at, hidden, content, content_model, origin, updated_at)
    VALUES (:item_id, :kind, :title, :summary, :body, :tags, :language, :url,
        :published_at, :expires_at, :hidden, :content, :content_model, 'catalog',
        clock_timestamp())
    ON CONFLICT (item_id) DO UPDATE SET
        kind = excluded.kind, title = excluded.title, summary = excluded.summary,
        body = excluded.body, tags = excluded.tags, language = excluded.language,
        url = excluded.url, published_at = excluded.published_at,
        expires_at = excluded.expires_at, hidden = excluded.hidden,
        content = coalesce(excluded.content, i.content),
        content_model = coalesce(excluded.content_model, i.content_model),
        origin = 'catalog', updated_at = excluded.updated_at
    """
)


_STORE_CONTENT = text(
    "UPDATE items SET content = :content, content_model = :model, updated_at = clock_timestamp()"
    " WHERE item_id = :item_id AND origin = 'catalog' AND updated_at = :updated_at"
)


class PostgresCatalog:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def write(self, rows: list[CatalogRow]) -> None:
        """Upsert every row in one transaction (sorted: concurrent writers lock in order)."""
        if not rows:
            return
        with self.engine.begin() as conn:
            conn.execute(
                _UPSERT,
                [
                    {
                        **{k: getattr(row, k) for k in row.__slots__ if k != "content"},
                        "tags": list(row.tags),
                        "content": None if row.content is None else row.content.tolist(),
                    }
                    for row in sorted(rows, key=lambda r: r.item_id)
                ],
            )

    def entries(self, since: datetime | None = None) -> tuple[list[CatalogEntry], datetime]:
        """Catalog items changed at or after ``since`` (every one without), and the
        database time the read began."""
        with self.engine.connect() as conn:
            read_at = conn.execute(text("SELECT clock_timestamp()")).scalar_one()
            rows = conn.execute(
                text(
                    "SELECT item_id, title, kind, tags, published_at, expires_at, hidden, content"
                    " FROM items WHERE origin = 'catalog'"
                    " AND (CAST(:since AS timestamptz) IS NULL OR updated_at >= :since)"
                    " ORDER BY item_id"
                ),
                {"since": since},
            )
            found = [
                CatalogEntry(
                    item_id,
                    ItemInfo(title, kind, tuple(tags or ()), published, expires, hidden),
                    None if content is None else np.asarray(content, dtype=np.float32),
                )
                for item_id, title, kind, tags, published, expires, hidden, content in rows
            ]
        return found, read_at

    def size(self) -> int:
        """How many items the catalog holds."""
        with self.engine.connect() as conn:
            return conn.execute(
                text("SELECT count(*) FROM items WHERE origin = 'catalog'")
            ).scalar_one()

    def missing_content(self, model: str) -> list[PendingContent]:
        """Catalog items without a content vector or with one from another encoder."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                text(
                    "SELECT item_id, title, tags, summary, updated_at FROM items"
                    " WHERE origin = 'catalog'"
                    " AND (content IS NULL OR content_model IS DISTINCT FROM :model)"
                    " ORDER BY item_id"
                ),
                {"model": model},
            )
            return [
                PendingContent(item_id, title or "", tuple(tags or ()), summary or "", updated)
                for item_id, title, tags, summary, updated in rows
            ]

    def store_content(self, vectors: list[tuple[PendingContent, np.ndarray]], model: str) -> int:
        """Store the vectors in one transaction; an item changed since it was read keeps
        what the change brought (its ``updated_at`` no longer matches). The new
        ``updated_at`` lets every worker adopt the vectors with the next catalog changes."""
        stored = 0
        with self.engine.begin() as conn:
            for pending, vector in sorted(vectors, key=lambda pair: pair[0].item_id):
                stored += conn.execute(
                    _STORE_CONTENT,
                    {
                        "item_id": pending.item_id,
                        "updated_at": pending.updated_at,
                        "content": np.asarray(vector, dtype=np.float32).tolist(),
                        "model": model,
                    },
                ).rowcount
        return stored
