"""Ask the recommender for a reader's items over Kafka: a request on
``recommendation-requests``, its reply on ``recommendations`` correlated by request id.

Replies are keyed by user, so they land on whichever partition the user hashes to, and a
consumer group would hand that partition to any generator replica. Each replica therefore
reads every partition of ``recommendations`` itself (no group), from the end it found at
start-up, so a reply sent after it began waiting is never missed and none is committed.
The kafka-python consumer runs in a thread of its own; waiters are futures on the loop.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable, Callable

import mode
from kafka import KafkaConsumer, TopicPartition

from shared.config import Settings
from shared.errors import InvalidEvent
from shared.events import EventCodec
from shared.events.envelope import Envelope
from shared.events.models import RecommendationRequestEvent, Recommendations
from shared.kafka.client import client_options
from shared.topics import full_name

from .errors import RecommenderUnavailable
from .replies import SOURCE

#: Where the lists a briefing is written from are shown, in impressions and experiments.
SURFACE = "digest"

log = logging.getLogger(__name__)

#: How long one poll of the replies waits (also how soon the listener sees a stop).
POLL_MS = 200


class RecommendationClient(mode.Service):
    def __init__(self, settings: Settings, publish: Callable[[Envelope], Awaitable[None]]) -> None:
        super().__init__()
        self.settings = settings
        self.publish = publish
        self.codec = EventCodec(max_bytes=settings.max_event_bytes)
        self._topic = full_name("recommendations", settings.topic_prefix)
        self._consumer: KafkaConsumer | None = None
        self._ready = asyncio.Event()
        self._waiting: dict[str, asyncio.Future[Recommendations]] = {}

    def _open(self) -> bool:
        """Read every partition from its end (in the listener's thread); False while the
        topic does not exist yet."""
        if self._consumer is None:
            self._consumer = KafkaConsumer(
                **client_options(self.settings), group_id=None, enable_auto_commit=False
            )
        partitions = self._consumer.partitions_for_topic(self._topic)
        if not partitions:
            return False
        assigned = [TopicPartition(self._topic, p) for p in sorted(partitions)]
        self._consumer.assign(assigned)
        self._consumer.seek_to_end(*assigned)
        for tp in assigned:
            self._consumer.position(tp)  # resolved now: a later reply is read, never skipped
        return True

    @mode.Service.task
    async def _listen(self) -> None:
        while not self.should_stop and not await asyncio.to_thread(self._open):
            log.info("waiting for topic %s", self._topic)
            await self.sleep(1.0)
        self._ready.set()
        while not self.should_stop:
            batch = await asyncio.to_thread(self._consumer.poll, timeout_ms=POLL_MS)
            for records in batch.values():
                for record in records:
                    self._deliver(record.value)

    def _deliver(self, value: bytes) -> None:
        try:
            reply = self.codec.decode(value, topic="recommendations").data
        except InvalidEvent as exc:
            log.warning("unreadable reply on %s: %s", self._topic, exc)
            return
        waiter = self._waiting.get(reply.request_id)
        if waiter is not None and not waiter.done():
            waiter.set_result(reply)

    async def on_stop(self) -> None:
        if self._consumer is not None:
            await asyncio.to_thread(self._consumer.close)

    async def top_items(self, user_id: str, k: int, timeout: float) -> Recommendations:
        """The recommender's reply for ``user_id``; :class:`RecommenderUnavailable` when
        none comes within ``timeout`` seconds (the request included)."""
        deadline = time.monotonic() + timeout
        request_id = f"gen-{uuid.uuid4()}"
        waiter = asyncio.get_running_loop().create_future()
        self._waiting[request_id] = waiter
        try:
            await asyncio.wait_for(self._ready.wait(), max(0.0, deadline - time.monotonic()))
            request = {"request_id": request_id, "user_id": user_id, "k": k, "surface": SURFACE}
            await asyncio.wait_for(
                self.publish(RecommendationRequestEvent.create(request, source=SOURCE)),
                max(0.0, deadline - time.monotonic()),
            )
            return await asyncio.wait_for(waiter, max(0.0, deadline - time.monotonic()))
        except TimeoutError:
            raise RecommenderUnavailable(
                f"the recommender did not answer within {timeout:g} s "
                "(recommendation-requests -> recommendations); is `marquee serve recommender` running?"
            ) from None
        finally:
            self._waiting.pop(request_id, None)
