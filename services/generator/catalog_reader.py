"""Postgres adapter: the catalog as the generator reads it (titles, summaries, content
vectors), for digests and grounded answers. The recommender writes the ``items`` rows
when it consumes ``catalog``; the generator only reads them."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sqlalchemy import Engine, bindparam, text

from .retrieval import CatalogEntry

_VISIBLE = "title IS NOT NULL AND NOT hidden AND (expires_at IS NULL OR expires_at > now())"


def _entry(row) -> CatalogEntry:
    content = np.asarray(row.content, dtype=np.float32) if row.content is not None else None
    return CatalogEntry(row.item_id, row.title, row.summary or "", content)


class CatalogReader:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def items(self, item_ids: Sequence[str]) -> dict[str, CatalogEntry]:
        """The visible items among ``item_ids``, by id (withdrawn, expired and unknown
        ones are left out)."""
        if not item_ids:
            return {}
        query = text(
            f"SELECT item_id, title, summary, NULL AS content FROM items"
            f" WHERE item_id IN :ids AND {_VISIBLE}"
        ).bindparams(bindparam("ids", expanding=True))
        with self.engine.connect() as conn:
            rows = conn.execute(query, {"ids": list(item_ids)}).all()
        return {row.item_id: _entry(row) for row in rows}

    def version(self) -> tuple[int, object]:
        """``(items, last change)``: a retrieval index built before is stale once it differs."""
        with self.engine.connect() as conn:
            row = conn.execute(text("SELECT count(*), max(updated_at) FROM items")).one()
        return int(row[0]), row[1]

    def searchable(self) -> list[CatalogEntry]:
        """Every visible item, with its content vector when it has one."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                text(
                    "SELECT item_id, title, summary, content FROM items"
                    f" WHERE {_VISIBLE} ORDER BY item_id"
                )
            ).all()
        return [_entry(row) for row in rows]
