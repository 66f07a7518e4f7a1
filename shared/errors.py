"""The root of every Marquee error and the one place that says retry or dead-letter.

Handlers never decide on their own whether a failure is worth retrying: they raise a
subclass of :class:`MarqueeError` and the caller asks :func:`is_retriable`.
"""

from __future__ import annotations


class MarqueeError(Exception):
    """Base class; ``retriable`` says whether the same input may succeed later."""

    retriable: bool = False


class ConfigurationError(MarqueeError):
    """Settings are missing or inconsistent; the user must change something."""


class InvalidEvent(MarqueeError):
    """Poison input: the bytes can never become a valid event. Goes to the DLQ."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class TransientError(MarqueeError):
    """Infrastructure hiccup (broker restart, database down): retry with backoff."""

    retriable = True


class DeliveryError(TransientError):
    """The broker did not confirm a record within the delivery timeout."""


def is_retriable(exc: BaseException) -> bool:
    """Retry decisions for every consumer loop live here."""
    if isinstance(exc, MarqueeError):
        return exc.retriable
    # Client libraries mark their own transient failures.
    return bool(getattr(exc, "retriable", False))
