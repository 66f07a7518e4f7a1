"""Each complete generated piece as a catalog item (``marquee.item.v1`` on ``catalog``).

Pure logic: no Kafka, no database. The item is made from the reply of record and the
request's prompt alone, so a redelivered request publishes the very same event again (the
same id and time: an upsert of the same item, harmless).
"""

from __future__ import annotations

import hashlib
import re
import uuid
from datetime import datetime

from shared.events import ItemEvent
from shared.events.models import GeneratedContent

from .replies import SOURCE

#: Content kinds that become catalog items (an assistant answer is for one person only).
CATALOG_KINDS = ("news", "script", "lyrics")
#: ... and only when the model ended the piece or used its token budget (a deadline that
#: cut one short leaves it to its requester).
CATALOG_FINISHES = ("stop", "length")
TITLE_CHARS = 120
SUMMARY_CHARS = 300
#: What an item's text may not hold: control characters but tab and newline.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
#: The end of a first sentence: its punctuation (and any emphasis closing), then a space.
_SENTENCE_END = re.compile(r"(?<=[.!?])[*_]*\s")
#: Markdown a model puts around a headline ("## Title", "**Title**").
_DECORATION = " #*_\t"
#: Item event ids are a UUID of the reply's id, in a namespace of their own.
_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "urn:marquee:generator:catalog")


def item_id_for(request_id: str) -> str:
    """The catalog id of a request's content; within the 128 characters an item id may have."""
    if len(request_id) <= 120:
        return f"gen-{request_id}"
    return f"gen-{hashlib.sha256(request_id.encode()).hexdigest()[:40]}"


def catalog_item_id(reply: GeneratedContent) -> str | None:
    """The item id of ``reply``'s piece, or ``None`` if it is no catalog item."""
    if (
        reply.status == "ok"
        and reply.kind in CATALOG_KINDS
        and reply.finish_reason in CATALOG_FINISHES
    ):
        return item_id_for(reply.request_id)
    return None


def clean(text: str) -> str:
    """``text`` as an item may hold it: line ends as ``\\n``, no other control character."""
    return _CONTROL.sub("", text.replace("\r\n", "\n").replace("\r", "\n"))


def shorten(text: str, limit: int) -> str:
    """``text`` on one line, cut at a word within ``limit`` characters (an ellipsis says so)."""
    text = " ".join(text.split())
    if len(text) <= limit:
        return text
    cut = text[: limit - 1]
    return (cut.rsplit(" ", 1)[0] if " " in cut else cut).rstrip(" ,;:") + "…"


def title_of(text: str) -> str:
    """The first sentence of the first non-empty line, headline decoration stripped."""
    line = next((ln.strip(_DECORATION) for ln in text.splitlines() if ln.strip(_DECORATION)), "")
    return shorten(_SENTENCE_END.split(line, maxsplit=1)[0].strip(_DECORATION), TITLE_CHARS)


def item_event(
    reply: GeneratedContent, made_at: datetime, prompt: str, max_bytes: int
) -> ItemEvent | None:
    """The catalog item of a stored ``reply`` made at ``made_at`` (``None`` when it is no
    catalog item): titled by its text's first sentence, or by the ``prompt`` when the text
    has none; its body cut so that the event stays within ``max_bytes``."""
    item_id = catalog_item_id(reply)
    if item_id is None:
        return None
    body = clean(reply.text or "")
    title = title_of(body) or title_of(clean(prompt)) or f"Untitled {reply.kind}"
    summary = shorten(body, SUMMARY_CHARS)

    def event(body: str) -> ItemEvent:
        data = {
            "item_id": item_id,
            "kind": reply.kind,
            "title": title,
            "summary": summary,
            "body": body,
            "tags": [reply.kind],
            "published_at": made_at,
        }
        event_id = str(uuid.uuid5(_NAMESPACE, reply.reply_id))
        return ItemEvent.create(data, source=SOURCE, id=event_id, time=made_at)

    item = event(body)
    size = len(item.model_dump_json(exclude_none=True).encode())
    while size > max_bytes and item.data.body:
        keep = max(0, int(len(item.data.body) * max_bytes / size) - 64)
        item = event(item.data.body[:keep])
        size = len(item.model_dump_json(exclude_none=True).encode())
    return item
