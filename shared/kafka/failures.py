"""Why a kafka-python client could not connect.

kafka-python logs each failed connection attempt and retries until its bootstrap timeout,
then raises a bare ``KafkaTimeoutError``, the same for a dead broker and for refused
credentials. :func:`capture` keeps those log lines (instead of printing them) so that an
entrypoint can say in one line which it was.
"""

from __future__ import annotations

import logging
import re
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..config import Settings

#: What brokers and kafka-python say when the credentials or the TLS handshake are refused.
_AUTH = re.compile(
    r"(SaslAuthenticationFailedError|AuthenticationFailedError|UnsupportedSaslMechanism"
    r"|IllegalSaslState|SSLError|CERTIFICATE_VERIFY_FAILED)[:\s]*(.*)"
)
_LOST = re.compile(r"Connection (?:failed|lost): (.*)")
_BACKOFF = re.compile(r"\s*\(backoff [^)]*\)\s*$")


class ConnectionFailures(logging.Handler):
    """The last few connection problems kafka-python logged."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.lines: deque[str] = deque(maxlen=50)

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())

    def authentication(self) -> str | None:
        """The broker's reason for refusing to authenticate us, if it did."""
        for line in reversed(self.lines):
            match = _AUTH.search(line)
            if match:
                reason = match.group(2).strip()
                # "SaslAuthenticationFailedError: SaslAuthenticationFailedError: Auth..."
                reason = reason.removeprefix(f"{match.group(1)}:").strip()
                return _BACKOFF.sub("", reason) or match.group(1)
        return None

    def lost(self) -> list[str]:
        """Why each connection failed or was lost, oldest first."""
        return [
            _BACKOFF.sub("", match.group(1)).strip()
            for match in map(_LOST.search, self.lines)
            if match
        ]

    def last(self) -> str | None:
        """The last reason a connection failed or was lost."""
        lost = self.lost()
        return lost[-1] if lost else None


def unreachable(exc: BaseException) -> bool:
    """Whether ``exc`` means no broker could be reached (or none let us in)."""
    from kafka.errors import KafkaConnectionError, KafkaTimeoutError, NodeNotReadyError

    return isinstance(exc, KafkaConnectionError | KafkaTimeoutError | NodeNotReadyError)


def explain(settings: Settings, failures: ConnectionFailures | None) -> str:
    """One line: refused credentials, or no broker, and what to do about it."""
    where = settings.kafka_bootstrap_servers
    refused = failures.authentication() if failures else None
    last = failures.last() if failures else None
    if refused is None and settings.kafka_security_protocol.startswith("SASL") and failures:
        # The broker took the connection, read our credentials and hung up without an
        # error response (Kafka 4 often does; a dead broker refuses the connection). Any
        # attempt counts: the last one may have been cut short by the bootstrap deadline.
        if any(reason.endswith("socket disconnected") for reason in failures.lost()):
            refused = "the broker closed the connection during SASL authentication"
    if refused:
        return (
            f"Kafka at {where} refused to authenticate {settings.kafka_sasl_username or 'us'} "
            f"({settings.kafka_security_protocol}"
            f"{', ' + settings.kafka_sasl_mechanism if settings.kafka_sasl_mechanism else ''}): "
            f"{refused}; check MARQUEE_KAFKA_SASL_USERNAME, MARQUEE_KAFKA_SASL_PASSWORD and "
            "the TLS settings"
        )
    reason = last or "no answer"
    return (
        f"cannot reach Kafka at {where} within {settings.kafka_bootstrap_timeout_seconds:g} s "
        f"({reason}); start the local stack with `make up` or set "
        "MARQUEE_KAFKA_BOOTSTRAP_SERVERS"
    )


@contextmanager
def capture() -> Iterator[ConnectionFailures]:
    """Keep kafka-python's log lines in a :class:`ConnectionFailures` while inside; none
    of them reaches the terminal."""
    logger = logging.getLogger("kafka")
    saved = logger.level, logger.propagate, list(logger.handlers)
    failures = ConnectionFailures()
    logger.setLevel(logging.WARNING)
    logger.propagate = False
    logger.handlers = [failures]
    try:
        yield failures
    finally:
        logger.level, logger.propagate, logger.handlers = saved[0], saved[1], saved[2]
