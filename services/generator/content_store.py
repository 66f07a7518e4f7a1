"""Postgres adapter for generated content: the reply of record.

The first reply stored for a request id is the reply: a request redelivered after a
crash, or raced by two workers, is answered from here with the identical reply (same
reply id, same text, same time), never generated twice. The catalog item of a complete
piece is not written here: the worker publishes it on ``catalog`` (see ``catalog.py``);
the row keeps its id, a link by id and not by foreign key (migration 0005), since the
recommender writes the item's row when it consumes ``catalog``, later.
"""

from __future__ import annotations

import json
from datetime import datetime

from sqlalchemy import Engine, text

from shared.events.models import GeneratedContent

from .catalog import catalog_item_id
from .replies import storable


class ContentStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def find(self, request_id: str) -> tuple[GeneratedContent, datetime] | None:
        """The stored reply and when it was made, or ``None`` if the request is new."""
        with self.engine.connect() as conn:
            row = conn.execute(
                text(
                    "SELECT request_id, reply_id, status, kind, text, error, model, prompt_tokens,"
                    " completion_tokens, finish_reason, timings, item_ids, impression_id,"
                    " created_at"
                    " FROM generated_content WHERE request_id = :r"
                ),
                {"r": request_id},
            ).one_or_none()
        if row is None:
            return None
        fields = dict(row._mapping)
        created_at = fields.pop("created_at")
        fields["timings"] = fields["timings"] or None
        reply = GeneratedContent.model_validate(fields)
        # Derived, not read: rows stored before migration 0005 have no item_id.
        return reply.model_copy(update={"item_id": catalog_item_id(reply)}), created_at

    def save(self, reply: GeneratedContent, prompt: str) -> tuple[GeneratedContent, datetime]:
        """Store ``reply`` unless the request has one already; returns the reply of record
        either way, with the id its catalog item has (if it is one)."""
        reply = reply.model_copy(
            update={"text": storable(reply.text), "error": storable(reply.error)}
        )
        with self.engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO generated_content (request_id, reply_id, kind, prompt, status,"
                    " text, error, model, prompt_tokens, completion_tokens, finish_reason,"
                    " timings, item_id, item_ids, impression_id) VALUES (:request_id, :reply_id,"
                    " :kind, :prompt, :status, :text, :error, :model, :prompt_tokens,"
                    " :completion_tokens, :finish_reason, CAST(:timings AS jsonb), :item_id,"
                    " :item_ids, :impression_id)"
                    " ON CONFLICT (request_id) DO NOTHING"
                ),
                {
                    **reply.model_dump(exclude={"timings", "item_id"}),
                    "prompt": storable(prompt),
                    "timings": json.dumps(reply.timings.model_dump() if reply.timings else {}),
                    "item_id": catalog_item_id(reply),
                },
            )
        stored = self.find(reply.request_id)
        assert stored is not None  # inserted above, or by whoever won the race
        return stored
