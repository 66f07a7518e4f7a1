"""Event -> Kafka record (topic, key, value, headers) by the registry's rules.

Every producer in Marquee (the Publisher SDK, service heartbeats, dead-letter writers)
goes through :func:`to_record`, so keys, headers and validation are the same everywhere.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass

from ..errors import InvalidEvent
from ..events import EventCodec
from ..events.envelope import Envelope
from ..topics import TOPIC_FOR_TYPE, full_name, spec

CONTENT_TYPE = b"application/cloudevents+json; charset=UTF-8"


@dataclass(frozen=True, slots=True)
class Record:
    topic: str
    key: bytes | None
    value: bytes
    headers: list[tuple[str, bytes]]


def to_record(
    event: Envelope, codec: EventCodec, *, prefix: str = "", topic: str | None = None
) -> Record:
    """Validate ``event`` for ``topic`` (default: its type's topic) and encode it.

    Raises :class:`InvalidEvent` when the event is bad or does not belong on the topic.
    """
    base = topic or TOPIC_FOR_TYPE.get(event.type)
    if base is None:
        raise InvalidEvent(f"no topic carries events of type {event.type!r}; name one")
    topic_spec = spec(base)
    if event.type not in topic_spec.event_types:
        raise InvalidEvent(
            f"topic {base!r} carries {', '.join(topic_spec.event_types)}, not {event.type!r}"
        )
    value = codec.encode(event)
    key = getattr(event.data, topic_spec.key_field, None)
    if topic_spec.key_is_base64:
        # Dead letters keep the original record's key (possibly none, possibly not UTF-8).
        raw_key = base64.b64decode(key) if key is not None else None
    elif key is None:
        raise InvalidEvent(f"data.{topic_spec.key_field} is the key of {base!r} and is missing")
    else:
        raw_key = str(key).encode()
    return Record(full_name(base, prefix), raw_key, value, headers_for(event.type))


def headers_for(event_type: str) -> list[tuple[str, bytes]]:
    """The headers every Marquee record carries: content type and CloudEvents type."""
    return [("content-type", CONTENT_TYPE), ("ce_type", event_type.encode())]
