"""The interactions ingest: an aiokafka consumer read in bounded batches with ``getmany``.

Faust's per-event stream costs ~150 µs an event before any of Marquee's code runs (a
do-nothing Faust worker tops out near 5.5k events/s here), so this topic leaves it: a
``mode.Service`` the Faust app starts and stops, owning its own consumer in its own group
(``<prefix>marquee-recommender-ingest``: Faust's group speaks Faust's assignor protocol).

A batch goes through two stages, one batch in each at a time: it is decoded and validated
in a thread while the batch before it is written (the write waits on Postgres, which runs
on the other core), then stored by ``ingest`` (dead letters, one transaction, fold-in;
retried until stored), and only then are its offsets committed. So an offset is never
committed past an unwritten event, and a crash redelivers at most the batches in hand,
which idempotent writes count once.

Rebalances: when partitions are revoked, the batch being written is given
``revoke_grace_seconds`` to finish and commit; past that it is abandoned (cancelled,
nothing committed; its new owner reads it again), so a write never starts after the
assignment is lost. A batch still being decoded is dropped the same way.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence

import mode
from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import KafkaError

log = logging.getLogger(__name__)

#: ``(batch) -> decoded``: pure CPU, run in a thread.
Classify = Callable[[Sequence], object]
#: ``(batch, decoded)``: store the batch, retrying until stored; returns once it is.
Store = Callable[[Sequence, object], Awaitable[None]]


class BatchIngest(mode.Service, ConsumerRebalanceListener):
    def __init__(
        self,
        make_consumer: Callable[[], AIOKafkaConsumer],
        *,
        topic: str,
        classify: Classify,
        store: Store,
        batch_size: int,
        wait_seconds: float,
        revoke_grace_seconds: float,
    ) -> None:
        mode.Service.__init__(self)
        #: Called in on_start: aiokafka clients are made inside the running loop.
        self.make_consumer = make_consumer
        self.consumer: AIOKafkaConsumer | None = None
        self.topic = topic
        self.classify = classify
        self.store = store
        self.batch_size = batch_size
        self.wait_seconds = wait_seconds
        self.revoke_grace_seconds = revoke_grace_seconds
        #: Bumped on every revoke: a batch fetched under an older one is not written.
        self.generation = 0
        #: The partitions held, ``None`` until the group first assigned some (or none).
        self.assigned: set[TopicPartition] | None = None
        self.rebalancing = False
        self._writing: asyncio.Task | None = None
        self._loop_task: asyncio.Future | None = None

    # Life cycle.

    async def on_start(self) -> None:
        self.consumer = self.make_consumer()
        self.consumer.subscribe([self.topic], listener=self)
        await self.consumer.start()
        self._loop_task = self.add_future(self._consume())

    async def on_stop(self) -> None:
        if self._loop_task is not None:
            self._loop_task.cancel()
        await self._settle("stopping")
        if self.consumer is not None:
            await self.consumer.stop()

    # Readiness (/readyz).

    def assignment_check(self) -> tuple[bool, str]:
        if self.assigned is None:
            return False, "ingest consumer not in its group yet"
        if self.rebalancing:
            return False, "ingest consumer rebalancing"
        parts = sorted(tp.partition for tp in self.assigned)
        return True, f"{len(parts)} {self.topic} partitions assigned: {parts}"

    # Rebalances (called by aiokafka's coordinator, between fetches).

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        self.rebalancing = True  # no new batch is written from here on
        await self._settle("partitions revoked")
        self.generation += 1  # what was fetched before is now someone else's

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        self.assigned = set(assigned)
        self.rebalancing = False
        log.info("ingest assigned %s", sorted(tp.partition for tp in assigned))

    async def _settle(self, why: str) -> None:
        """Let the batch being written finish and commit, or abandon it after the grace."""
        writing = self._writing
        if writing is None or writing.done():
            return
        try:
            await asyncio.wait_for(asyncio.shield(writing), self.revoke_grace_seconds)
        except TimeoutError:
            writing.cancel()
            await asyncio.wait([writing])  # gone before the partitions are
            log.warning(
                "%s: abandoned a batch not stored within %g s (uncommitted: read again)",
                why,
                self.revoke_grace_seconds,
            )

    # The loop.

    async def _consume(self) -> None:
        try:
            await self._batches()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            # A bug, not bad input (that is dead-lettered): stop the worker rather than
            # stall the partitions silently or read past the batch that failed.
            log.exception("the interactions ingest failed; stopping the worker")
            await self.crash(exc)

    async def _batches(self) -> None:
        while True:
            fetched = await self.consumer.getmany(
                timeout_ms=int(self.wait_seconds * 1000), max_records=self.batch_size
            )
            batch = [record for records in fetched.values() for record in records]
            if not batch:
                continue
            generation = self.generation
            decoded = await asyncio.to_thread(self.classify, batch)
            if self._writing is not None:
                # One batch written at a time, in order; wait() leaves a cancelled one be.
                await asyncio.wait([self._writing])
                if not self._writing.cancelled() and self._writing.exception():
                    raise self._writing.exception()
            if self.rebalancing or generation != self.generation:
                continue  # revoked while decoding: its partitions' new owner reads it
            self._writing = asyncio.create_task(self._write(batch, decoded, generation))

    async def _write(self, batch: list, decoded: object, generation: int) -> None:
        await self.store(batch, decoded)
        if generation != self.generation:
            return  # revoked while writing, past the grace: not ours to commit any more
        offsets: dict[TopicPartition, int] = {}
        for record in batch:
            tp = TopicPartition(record.topic, record.partition)
            offsets[tp] = max(offsets.get(tp, 0), record.offset + 1)
        try:
            await self.consumer.commit(offsets)
        except KafkaError as exc:
            # Stored but not committed: redelivered later and counted once (idempotent).
            log.warning(
                "committing %s offsets failed (%s); they will be read again", self.topic, exc
            )
