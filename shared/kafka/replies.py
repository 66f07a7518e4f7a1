"""Wait for the reply to one request on a reply topic (keyed by request id), from the
offsets the topic ended at before the request was sent, so a quick reply is never missed."""

from __future__ import annotations

import time

from kafka import KafkaConsumer, TopicPartition

from ..config import Settings
from ..errors import ConfigurationError, InvalidEvent
from ..events import EventCodec
from ..topics import full_name
from .client import client_options


class ReplyWatch:
    """Open before sending the request; :meth:`wait_for` then reads from there."""

    def __init__(self, settings: Settings, base: str) -> None:
        self._topic = full_name(base, settings.topic_prefix)
        self._base = base
        self._codec = EventCodec(max_bytes=settings.max_event_bytes)
        self._consumer = KafkaConsumer(
            **client_options(settings), group_id=None, enable_auto_commit=False
        )

    def __enter__(self) -> ReplyWatch:
        partitions = self._consumer.partitions_for_topic(self._topic)
        if not partitions:
            self._consumer.close()
            raise ConfigurationError(
                f"topic {self._topic!r} does not exist; run `marquee topics ensure`"
            )
        assigned = [TopicPartition(self._topic, p) for p in sorted(partitions)]
        self._consumer.assign(assigned)
        for tp, offset in self._consumer.end_offsets(assigned).items():
            self._consumer.seek(tp, offset)
        return self

    def __exit__(self, *exc) -> None:
        self._consumer.close()

    def wait_for(self, request_id: str, *, timeout: float):
        """The ``data`` of the first reply keyed ``request_id``, or None after ``timeout``."""
        key = request_id.encode()
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            batch = self._consumer.poll(timeout_ms=int(min(left, 1.0) * 1000) or 1)
            for records in batch.values():
                for record in records:
                    if record.key != key:
                        continue
                    try:
                        return self._codec.decode(record.value, topic=self._base).data
                    except InvalidEvent:
                        continue  # not a reply we can read; the service dead-letters such
        return None
