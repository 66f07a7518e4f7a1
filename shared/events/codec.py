"""Bytes <-> events, with the validation every producer and consumer applies.

Everything that can be wrong with input is reported as :class:`InvalidEvent` with a
message precise enough to fix the sender: which field, what was expected.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Union

from pydantic import Field, TypeAdapter, ValidationError

from ..errors import InvalidEvent
from ..topics import spec
from .envelope import Envelope, describe
from .models import EVENT_TYPES

# One discriminated union over every known type: a single validation pass, and the
# ``type`` attribute picks the model (no trial-and-error over candidates).
_ONE_OF = Annotated[Union[tuple(EVENT_TYPES.values())], Field(discriminator="type")]  # noqa: UP007
_ANY_EVENT = TypeAdapter(_ONE_OF)
#: A JSON array of events in one pass (the collector's batches): no array in between.
_EVENT_LIST = TypeAdapter(list[_ONE_OF])


@dataclass(frozen=True)
class EventCodec:
    """Validating JSON codec. ``max_bytes`` bounds one encoded event."""

    max_bytes: int = 64 * 1024
    max_clock_skew_seconds: float = 300.0

    def decode(
        self, raw: bytes | bytearray | memoryview | str | None, *, topic: str | None = None
    ) -> Envelope:
        """The event in ``raw``; with ``topic`` (a registry name), only a type it carries.

        Raises :class:`InvalidEvent` saying what is wrong."""
        event = self._decode(raw)
        if topic is not None and event.type not in spec(topic).event_types:
            raise InvalidEvent(f"{event.type} does not belong on the {topic} topic")
        return event

    def _decode(self, raw: bytes | bytearray | memoryview | str | None) -> Envelope:
        if raw is None:
            raise InvalidEvent("empty message (no value)")
        if isinstance(raw, str):
            raw = raw.encode()
        elif isinstance(raw, memoryview):
            raw = raw.tobytes()
        if len(raw) > self.max_bytes:
            raise InvalidEvent(
                f"event is {len(raw)} bytes; the limit is {self.max_bytes} (MARQUEE_MAX_EVENT_BYTES)"
            )
        try:
            event = _ANY_EVENT.validate_json(raw)
        except ValidationError as exc:
            if any(e["type"] in ("json_invalid", "json_type") for e in exc.errors()):
                first = exc.errors()[0]
                raise InvalidEvent(f"not a JSON event object: {first['msg']}") from None
            first = exc.errors()[0] if exc.errors() else {}
            if first.get("type") in ("dict_type", "model_attributes_type") and not first["loc"]:
                raise InvalidEvent("not a JSON event object (a CloudEvents envelope)") from None
            raise InvalidEvent(describe(exc)) from None
        self._check_time(event)
        return event

    def decode_all(self, raw: bytes) -> list[Envelope]:
        """Every event of a JSON array in one validation pass, each held to the clock-skew
        rule; :class:`InvalidEvent` if any of them is bad (the caller then goes event by
        event to say which). ``max_bytes`` is for the encoded events, checked there."""
        try:
            events = _EVENT_LIST.validate_json(raw)
        except ValidationError as exc:
            raise InvalidEvent(describe(exc)) from None
        for event in events:
            self._check_time(event)
        return events

    def encode(self, event: Envelope) -> bytes:
        if type(event).event_type not in EVENT_TYPES:
            raise InvalidEvent(f"unknown event type {event.type!r}")
        self._check_time(event)
        raw = event.model_dump_json(exclude_none=True).encode()
        if len(raw) > self.max_bytes:
            raise InvalidEvent(
                f"event is {len(raw)} bytes; the limit is {self.max_bytes} (MARQUEE_MAX_EVENT_BYTES)"
            )
        return raw

    def _check_time(self, event: Envelope) -> None:
        ahead = (event.time - datetime.now(UTC)).total_seconds()
        if ahead > self.max_clock_skew_seconds:
            raise InvalidEvent(
                f"time {event.time.isoformat()} is {ahead:.0f} s in the future "
                f"(allowed clock skew: {self.max_clock_skew_seconds:.0f} s)"
            )
