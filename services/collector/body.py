"""A request body -> the events in it, by the CloudEvents HTTP binding (pure).

Structured mode (``application/cloudevents+json``) carries one event; batched mode
(``application/cloudevents-batch+json``) a JSON array of them. ``text/plain`` is what
``navigator.sendBeacon`` sends without a CORS preflight: its body is either form, told
apart by its first character. Each event comes back as its own JSON bytes, which the
shared codec then validates exactly as a consumer would.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from shared.errors import InvalidEvent
from shared.events import EventCodec
from shared.events.envelope import Envelope

from .errors import RequestRefused

STRUCTURED = "application/cloudevents+json"
BATCH = "application/cloudevents-batch+json"
BEACON = "text/plain"
MEDIA_TYPES = (STRUCTURED, BATCH, BEACON)


def media_type(content_type: str | None) -> str:
    """``text/plain;charset=UTF-8`` -> ``text/plain``; refuses what the collector does not speak."""
    media = (content_type or "").split(";", 1)[0].strip().lower()
    if media not in MEDIA_TYPES:
        raise RequestRefused(
            415,
            f"unsupported Content-Type {media[:60]!r}: send {STRUCTURED} (one event), "
            f"{BATCH} (a JSON array) or {BEACON} (either, from navigator.sendBeacon)",
        )
    return media


@dataclass(frozen=True)
class Parsed:
    """An element of the body: its JSON bytes when it is an object, else why not."""

    raw: bytes | None
    id: str | None
    type: str | None
    source: str | None
    problem: str | None = None
    #: Already decoded by the codec (a body whose every event is valid: the common case).
    event: Envelope | None = None


@dataclass(frozen=True)
class Body:
    events: list[Parsed]
    batched: bool


def parse(body: bytes, media: str, *, max_events: int, codec: EventCodec | None = None) -> Body:
    """The events of ``body``; refuses a body that is not JSON or holds too many events.

    With ``codec``, a body of valid events is decoded in one pass; any other goes element by
    element, each re-encoded for the codec, so that every problem is named by its index."""
    if codec is not None and (decoded := _all_valid(body, media, max_events, codec)):
        return decoded
    if not body.strip():
        raise RequestRefused(400, "empty body: send a CloudEvents JSON object or array")
    try:
        document = json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise RequestRefused(400, f"the body is not JSON: {str(exc)[:120]}") from None
    batched = media == BATCH or (media == BEACON and isinstance(document, list))
    if batched:
        if not isinstance(document, list):
            raise RequestRefused(400, f"a {BATCH} body is a JSON array of events")
        if len(document) > max_events:
            raise RequestRefused(
                413,
                f"{len(document)} events in one batch; the limit is {max_events} "
                "(MARQUEE_COLLECTOR_MAX_BATCH_EVENTS): split it",
            )
        if not document:
            raise RequestRefused(400, "an empty batch: send at least one event")
        return Body([_element(e) for e in document], batched=True)
    if not isinstance(document, dict):
        raise RequestRefused(400, "the body must be a CloudEvents JSON object (one event)")
    return Body([_element(document)], batched=False)


def _all_valid(body: bytes, media: str, max_events: int, codec: EventCodec) -> Body | None:
    batched = media == BATCH or (media == BEACON and body.lstrip()[:1] == b"[")
    try:
        events = codec.decode_all(body) if batched else [codec.decode(body)]
    except (InvalidEvent, RecursionError):
        return None
    if not 1 <= len(events) <= max_events:
        return None  # the element-wise path says what is wrong
    return Body([Parsed(None, e.id, e.type, e.source, event=e) for e in events], batched)


def _attribute(element: dict[str, Any], name: str) -> str | None:
    value = element.get(name)
    return value[:256] if isinstance(value, str) else None


def _element(element: Any) -> Parsed:
    if not isinstance(element, dict):
        return Parsed(None, None, None, None, "not a JSON event object (a CloudEvents envelope)")
    raw = json.dumps(element, ensure_ascii=False, separators=(",", ":")).encode()
    return Parsed(
        raw,
        _attribute(element, "id"),
        _attribute(element, "type"),
        _attribute(element, "source"),
    )
