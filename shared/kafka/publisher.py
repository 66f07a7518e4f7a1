"""The publisher SDK: validated CloudEvents onto the registry's topics, confirmed.

    with Publisher(settings) as pub:
        pub.publish(InteractionEvent.create({...}))   # validated, keyed, async
    # leaving the block flushes: every event is confirmed by the broker or raised

The producer is idempotent with ``acks=all``: a retried send never duplicates a record
within a partition, and a send counts as delivered only once every in-sync replica has it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from kafka import KafkaProducer
from kafka.errors import KafkaError, KafkaTimeoutError
from kafka.producer.future import FutureRecordMetadata

from ..config import Settings
from ..errors import DeliveryError, InvalidEvent
from ..events import EventCodec
from ..events.envelope import Envelope
from .client import client_options
from .records import Record, to_record

log = logging.getLogger(__name__)

#: Producer settings the SDK insists on; a benchmark's bare producer uses the same.
PRODUCER_DEFAULTS: dict[str, Any] = {
    "acks": "all",
    "enable_idempotence": True,
    "linger_ms": 5,
    "batch_size": 64 * 1024,
    "compression_type": None,
    "delivery_timeout_ms": 120_000,
    # How long send() may wait for topic metadata or buffer space before failing.
    "max_block_ms": 10_000,
}

#: An :class:`Outcome`'s status: confirmed by the broker, refused as invalid (never retry),
#: or not confirmed (retriable: the same event, same id, may be sent again).
ACCEPTED, REJECTED, FAILED = "accepted", "rejected", "failed"


@dataclass(frozen=True, slots=True)
class Outcome:
    """What became of the event at ``index`` of a batch."""

    index: int
    id: str
    status: str
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class BatchReport:
    """One :class:`Outcome` per event of a :meth:`Publisher.publish_many` batch, in order."""

    outcomes: tuple[Outcome, ...]

    @property
    def accepted(self) -> int:
        return sum(o.status == ACCEPTED for o in self.outcomes)

    def problems(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.status != ACCEPTED]


class Publisher:
    """Validate, key, send and confirm Marquee events (thread-safe, like the producer)."""

    def __init__(
        self,
        settings: Settings,
        *,
        codec: EventCodec | None = None,
        **producer_overrides: Any,
    ) -> None:
        self._prefix = settings.topic_prefix
        self._codec = codec or EventCodec(
            max_bytes=settings.max_event_bytes,
            max_clock_skew_seconds=settings.max_clock_skew_seconds,
        )
        options = {**PRODUCER_DEFAULTS, **producer_overrides}
        # The broker must accept what the codec accepts, envelope and headers included.
        options.setdefault("max_request_size", max(1024 * 1024, 2 * self._codec.max_bytes))
        self._producer = KafkaProducer(**client_options(settings, **options))
        self._lock = threading.Lock()
        self.confirmed = 0
        self.failed = 0
        self._unreported: list[BaseException] = []  # failures since the last flush

    # -- sending -------------------------------------------------------------------------
    def encode(self, event: Envelope, topic: str | None = None) -> Record:
        """Validate ``event`` and return the record it would be, without sending."""
        return to_record(event, self._codec, prefix=self._prefix, topic=topic)

    def publish(self, event: Envelope, *, topic: str | None = None) -> FutureRecordMetadata:
        """Send one event; returns the future of its broker confirmation.

        Raises :class:`InvalidEvent` before anything reaches Kafka when the event is bad,
        and :class:`DeliveryError` when the record cannot be handed to the broker.
        """
        return self.publish_record(self.encode(event, topic), what=f"event {event.id}")

    def publish_record(self, record: Record, *, what: str = "a record") -> FutureRecordMetadata:
        """Send a record already encoded by the contract (by :meth:`encode`, or by a
        generator that writes the same bytes, shared/data/synthetic.py), unchecked;
        confirmed and counted like any event."""
        try:
            future = self._producer.send(
                record.topic, key=record.key, value=record.value, headers=record.headers
            )
        except KafkaTimeoutError as exc:
            # No metadata for the topic within max_block_ms: missing topic or no broker.
            raise DeliveryError(
                f"topic {record.topic!r} is not known to the broker (does it exist? "
                f"`marquee topics ensure` creates it) or the broker is unreachable: {exc}"
            ) from exc
        except KafkaError as exc:
            raise DeliveryError(f"could not send {what}: {exc}") from exc
        future.add_callback(self._on_success)
        future.add_errback(self._on_error, record.topic)
        return future

    def publish_many(
        self, events: Iterable[Envelope], *, topic: str | None = None, timeout: float = 30.0
    ) -> BatchReport:
        """Send a batch and wait until the broker confirmed each event, one verdict per event.

        The collector's batch semantics: a bad event does not stop the others. Each event is
        validated on its own; the valid ones are sent, then awaited together (at most
        ``timeout`` seconds in all). Nothing raises for one event: the report says, by
        index, which were accepted, which were rejected (invalid: never retry them) and
        which failed (not confirmed: the same event may succeed later)."""
        outcomes: list[Outcome] = []
        pending: list[tuple[int, Envelope, FutureRecordMetadata]] = []
        for index, event in enumerate(events):
            try:
                pending.append((index, event, self.publish(event, topic=topic)))
                outcomes.append(Outcome(index, event.id, ACCEPTED))
            except InvalidEvent as exc:
                outcomes.append(Outcome(index, event.id, REJECTED, exc.reason))
            except DeliveryError as exc:
                outcomes.append(Outcome(index, event.id, FAILED, str(exc)))
        deadline = time.monotonic() + timeout
        for index, event, future in pending:
            try:
                future.get(timeout=max(0.0, deadline - time.monotonic()))
            except KafkaError as exc:
                outcomes[index] = Outcome(
                    index, event.id, FAILED, f"not confirmed by the broker: {exc}"
                )
        return BatchReport(tuple(outcomes))

    def publish_sync(self, event: Envelope, *, topic: str | None = None, timeout: float = 30.0):
        """Send one event and wait for the broker's confirmation (its RecordMetadata)."""
        try:
            return self.publish(event, topic=topic).get(timeout=timeout)
        except KafkaError as exc:
            raise DeliveryError(f"event {event.id} was not confirmed: {exc}") from exc

    # -- confirmation --------------------------------------------------------------------
    def _on_success(self, _metadata: Any) -> None:
        with self._lock:
            self.confirmed += 1

    def _on_error(self, topic: str, exc: BaseException) -> None:
        with self._lock:
            self.failed += 1
            self._unreported.append(exc)
        log.error("delivery to %s failed: %s", topic, exc)

    def flush(self, timeout: float | None = None) -> None:
        """Wait until every event sent so far is confirmed; raise if any failed."""
        self._producer.flush(timeout=timeout)
        with self._lock:
            failures, self._unreported = self._unreported, []
        if failures:
            raise DeliveryError(
                f"{len(failures)} event(s) were not confirmed by the broker: {failures[-1]}"
            )

    def close(self, timeout: float | None = 30.0) -> None:
        try:
            self.flush(timeout)
        finally:
            self._producer.close(timeout=timeout)

    def __enter__(self) -> Publisher:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:  # don't mask the original error with a flush failure
            try:
                self.close()
            except Exception:  # noqa: BLE001
                log.exception("closing the publisher after an error")
