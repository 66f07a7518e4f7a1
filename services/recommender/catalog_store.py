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
from .persistence import CatalogEntry, CatalogRow

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
