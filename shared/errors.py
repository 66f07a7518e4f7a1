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


#: Database errors that a later attempt may not meet: the connection or the server, not
#: the data (SQLAlchemy's and the driver's class names; DB-API 2.0 defines them).
_TRANSIENT_DATABASE_ERRORS = frozenset({"OperationalError", "InterfaceError", "TimeoutError"})


def is_retriable(exc: BaseException) -> bool:
    """Retry decisions for every consumer loop live here: ``True`` for what may succeed
    later on the same input (a broker or database away), ``False`` for poison (it will
    fail the same way again: send it to the DLQ)."""
    if isinstance(exc, MarqueeError):
        return exc.retriable
    module = type(exc).__module__.split(".")[0]
    if module in ("sqlalchemy", "psycopg2"):
        # DataError (a value the column cannot hold), IntegrityError (a constraint the
        # data breaks), ProgrammingError: the same rows fail again. A dropped connection
        # (disconnects surface as any class) may come back.
        invalidated = bool(getattr(exc, "connection_invalidated", False))
        return invalidated or type(exc).__name__ in _TRANSIENT_DATABASE_ERRORS
    # Client libraries mark their own transient failures (kafka-python, aiokafka).
    return bool(getattr(exc, "retriable", False))
