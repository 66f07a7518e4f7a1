"""Postgres adapter for generated content: the reply of record, and the catalog item.

The first reply stored for a request id is the reply: a request redelivered after a
crash, or raced by two workers, is answered from here with the identical reply (same
reply id, same text, same time), never generated twice.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime

from sqlalchemy import Engine, text

from shared.events.models import GeneratedContent

#: Content kinds that become catalog items (an assistant answer is for one person only).
CATALOG_KINDS = ("news", "script", "lyrics")
#: ... and only when the model ended the piece or used its token budget.
CATALOG_FINISHES = ("stop", "length")


def item_id_for(request_id: str) -> str:
    """The catalog id of a request's content; within the 128 characters an item id may have."""
    if len(request_id) <= 120:
        return f"gen-{request_id}"
    return f"gen-{hashlib.sha256(request_id.encode()).hexdigest()[:40]}"


def storable(value: str | None) -> str | None:
    """``value`` as Postgres can store it: a text column cannot hold NUL (a prompt may carry
    one, and a model may emit one), so each becomes U+FFFD."""
    return value.replace("\x00", "\ufffd") if value else value


def title_of(text_: str) -> str:
    """The first non-empty line, short enough for a list of articles."""
    line = next((ln.strip(" #*\t") for ln in text_.splitlines() if ln.strip(" #*\t")), "")
    return line[:200]


class ContentStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def find(self, request_id: str) -> tuple[GeneratedContent, datetime] | None:
        """The stored reply and when it was made, or ``None`` if the request is new."""
        with self.engine.connect() as conn:
            row = conn.execute(
                text(
                    "SELECT request_id, reply_id, status, kind, text, error, model, prompt_tokens,"
                    " completion_tokens, finish_reason, timings, item_id, created_at"
                    " FROM generated_content WHERE request_id = :r"
                ),
                {"r": request_id},
            ).one_or_none()
        if row is None:
            return None
        fields = dict(row._mapping)
        created_at = fields.pop("created_at")
        fields["timings"] = fields["timings"] or None
        return GeneratedContent.model_validate(fields), created_at

    def save(self, reply: GeneratedContent, prompt: str) -> tuple[GeneratedContent, datetime]:
        """Store ``reply`` (and its catalog item) unless the request has one already;
        returns the reply of record either way. Only complete pieces become catalog items
        (a deadline that cut one short leaves it to its requester)."""
        reply = reply.model_copy(
            update={"text": storable(reply.text), "error": storable(reply.error)}
        )
        item_id = None
        if (
            reply.status == "ok"
            and reply.kind in CATALOG_KINDS
            and reply.finish_reason in CATALOG_FINISHES
        ):
            item_id = item_id_for(reply.request_id)
        with self.engine.begin() as conn:
            if item_id is not None:
                conn.execute(
                    text(
                        "INSERT INTO items (item_id, kind, title, origin, attributes)"
                        " VALUES (:i, :kind, :title, 'generated', CAST(:attrs AS jsonb))"
                        " ON CONFLICT (item_id) DO NOTHING"
                    ),
                    {
                        "i": item_id,
                        "kind": reply.kind,
                        "title": title_of(reply.text or ""),
                        "attrs": json.dumps({"request_id": reply.request_id, "model": reply.model}),
                    },
                )
            conn.execute(
                text(
                    "INSERT INTO generated_content (request_id, reply_id, kind, prompt, status,"
                    " text, error, model, prompt_tokens, completion_tokens, finish_reason,"
                    " timings, item_id) VALUES (:request_id, :reply_id, :kind, :prompt, :status,"
                    " :text, :error, :model, :prompt_tokens, :completion_tokens, :finish_reason,"
                    " CAST(:timings AS jsonb), :item_id) ON CONFLICT (request_id) DO NOTHING"
                ),
                {
                    **reply.model_dump(exclude={"timings", "item_id"}),
                    "prompt": storable(prompt),
                    "timings": json.dumps(reply.timings.model_dump() if reply.timings else {}),
                    "item_id": item_id,
                },
            )
        stored = self.find(reply.request_id)
        assert stored is not None  # inserted above, or by whoever won the race
        return stored
