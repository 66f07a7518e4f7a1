"""Build the dead letter for input that can never be processed (pure: no Kafka here)."""

from __future__ import annotations

import base64
from datetime import UTC, datetime

from .models import DeadLetterEvent


def dead_letter(
    *,
    service: str,
    topic: str,
    partition: int,
    offset: int,
    key: bytes | None,
    value: bytes | None,
    error: BaseException | str,
    max_value_bytes: int = 256 * 1024,  # base64 makes it 4/3 of this in the letter
) -> DeadLetterEvent:
    """The original bytes (base64, cut at ``max_value_bytes``), the reason and the position.

    The id is the position, so re-dead-lettering the same record after a crash is
    idempotent for anyone keyed on ``source`` + ``id``.
    """
    raw = value or b""
    reason = str(error) or type(error).__name__
    if len(raw) > max_value_bytes:
        reason = f"{reason} (original value cut from {len(raw)} to {max_value_bytes} bytes)"
        raw = raw[:max_value_bytes]
    return DeadLetterEvent.create(
        {
            "source_topic": topic,
            "partition": partition,
            "offset": offset,
            "key_b64": base64.b64encode(key).decode() if key is not None else None,
            "value_b64": base64.b64encode(raw).decode(),
            "error": reason[:4000],
            "error_class": error.__class__.__name__ if isinstance(error, BaseException) else "str",
            "service": service,
            "failed_at": datetime.now(UTC),
        },
        source=f"urn:marquee:{service}",
        id=f"{topic}/{partition}/{offset}",
    )


def dead_letter_for(service: str, message, error: BaseException | str) -> DeadLetterEvent:
    """A dead letter for a consumed record: anything with ``topic``, ``partition``,
    ``offset``, ``key`` and ``value`` (a Faust message, a kafka-python record)."""
    return dead_letter(
        service=service,
        topic=message.topic,
        partition=message.partition,
        offset=message.offset,
        key=message.key,
        value=message.value,
        error=error,
    )
