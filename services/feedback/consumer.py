"""What the feedback service does with each consumed batch: decode, keep, count.

A batch is acked when its agent asks for the next one (Faust's ``take_events``), so
:meth:`FeedbackConsumer.consume` returns only after the rows are committed in Postgres,
retrying until then: the offsets are committed after the database commit, and a batch
redelivered after a crash is written again as no-ops (every row is keyed by its event).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence

from prometheus_client import Counter

from shared.errors import InvalidEvent
from shared.events import EventCodec
from shared.retry import retry_until_done

from .rows import impression_row, interaction_row
from .store import FeedbackStore

log = logging.getLogger(__name__)

DeadLetter = Callable[[object, str, BaseException], Awaitable[None]]


class FeedbackConsumer:
    def __init__(
        self,
        store: FeedbackStore,
        codec: EventCodec,
        dead_letter: DeadLetter,
        events: Counter,
        *,
        max_retry_seconds: float = 10.0,
    ) -> None:
        self.store = store
        self.codec = codec
        self.dead_letter = dead_letter
        #: By topic and outcome: stored, duplicate, ignored (views, shares), invalid.
        self.events = events
        self.max_retry_seconds = max_retry_seconds

    async def consume(self, batch: Sequence, topic: str) -> None:
        """Keep what ``batch`` (records of registry topic ``topic``) holds that counts."""
        impressions, interactions, ignored = [], [], 0
        for record in batch:
            try:
                event = self.codec.decode(record.value, topic=topic)
            except InvalidEvent as exc:
                await self._invalid(record, topic, exc)
                continue
            if topic == "impressions":
                impressions.append(impression_row(event))
            elif (row := interaction_row(event)) is not None:
                interactions.append(row)
            else:
                ignored += 1
        written = await retry_until_done(
            lambda: asyncio.to_thread(self.store.write, impressions, interactions),
            what=f"storing a batch of {topic}",
            max_delay=self.max_retry_seconds,
        )
        new, kept = (
            (written.impressions, len(impressions))
            if topic == "impressions"
            else (written.interactions, len(interactions))
        )
        self._count(topic, "stored", new)
        self._count(topic, "duplicate", kept - new)
        self._count(topic, "ignored", ignored)

    async def _invalid(self, record, topic: str, exc: InvalidEvent) -> None:
        self._count(topic, "invalid", 1)
        if topic == "impressions":
            # This service is the impressions' consumer: the dead letter is its to write.
            await retry_until_done(
                lambda: self.dead_letter(record, topic, exc),
                what="dead-lettering an impression",
                max_delay=self.max_retry_seconds,
            )
        else:
            # The recommender dead-letters bad interactions already; one letter is enough.
            log.debug(
                "skipped an invalid interaction at %s[%s] offset=%s: %s",
                topic,
                record.partition,
                record.offset,
                exc,
            )

    def _count(self, topic: str, outcome: str, n: int) -> None:
        if n:
            self.events.labels(topic, outcome).inc(n)
