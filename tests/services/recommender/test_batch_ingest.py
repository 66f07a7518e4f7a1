"""BatchIngest's offset policy with an in-memory consumer: offsets are committed only after
the batch is stored, and a revoke finishes the batch in flight or abandons it uncommitted."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from aiokafka import TopicPartition

from services.recommender.batch_ingest import BatchIngest

TOPIC = "interactions"


@dataclass
class Rec:
    topic: str
    partition: int
    offset: int
    key: bytes | None = None
    value: bytes | None = b"{}"


class FakeConsumer:
    """What BatchIngest uses of AIOKafkaConsumer: batches handed out in order."""

    def __init__(self, batches: list[list[Rec]]) -> None:
        self.batches = batches
        self.commits: list[dict[TopicPartition, int]] = []

    def subscribe(self, topics, listener) -> None:
        self.listener = listener

    async def start(self) -> None:
        await self.listener.on_partitions_assigned({TopicPartition(TOPIC, 0)})

    async def stop(self) -> None:
        pass

    async def getmany(self, timeout_ms: int, max_records: int):
        if not self.batches:
            await asyncio.sleep(timeout_ms / 1000)
            return {}
        batch = self.batches.pop(0)[:max_records]
        return {TopicPartition(TOPIC, batch[0].partition): batch}

    async def commit(self, offsets) -> None:
        self.commits.append(dict(offsets))


def ingest(consumer: FakeConsumer, store, grace: float = 1.0) -> BatchIngest:
    return BatchIngest(
        lambda: consumer,
        topic=TOPIC,
        classify=lambda batch: len(batch),
        store=store,
        batch_size=100,
        wait_seconds=0.01,
        revoke_grace_seconds=grace,
    )


async def until(predicate, timeout: float = 2.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline
        await asyncio.sleep(0.005)


def test_offsets_are_committed_after_each_batch_is_stored():
    stored: list[int] = []
    consumer = FakeConsumer([[Rec(TOPIC, 0, n) for n in range(3)], [Rec(TOPIC, 0, 3)]])

    async def store(batch, decoded):
        assert not consumer.commits or len(consumer.commits) == len(stored)
        stored.append(decoded)

    async def run():
        service = ingest(consumer, store)
        await service.start()
        await until(lambda: len(consumer.commits) == 2)
        await service.stop()

    asyncio.run(run())
    assert stored == [3, 1]
    assert consumer.commits == [{TopicPartition(TOPIC, 0): 3}, {TopicPartition(TOPIC, 0): 4}]


def test_a_revoke_waits_for_the_batch_in_flight_then_it_is_committed():
    release = asyncio.Event()
    consumer = FakeConsumer([[Rec(TOPIC, 0, 0)]])

    async def store(batch, decoded):
        await release.wait()

    async def run():
        service = ingest(consumer, store)
        await service.start()
        await until(lambda: service._writing is not None)
        revoking = asyncio.create_task(service.on_partitions_revoked({TopicPartition(TOPIC, 0)}))
        await asyncio.sleep(0.05)
        assert not revoking.done() and not consumer.commits
        assert service.assignment_check()[0] is False  # rebalancing
        release.set()
        await revoking
        await service.stop()

    asyncio.run(run())
    assert consumer.commits == [{TopicPartition(TOPIC, 0): 1}]


def test_a_batch_not_stored_within_the_grace_is_abandoned_uncommitted():
    consumer = FakeConsumer([[Rec(TOPIC, 0, 0)]])

    async def store(batch, decoded):
        await asyncio.Event().wait()  # the database never answers

    async def run():
        service = ingest(consumer, store, grace=0.05)
        await service.start()
        await until(lambda: service._writing is not None)
        await service.on_partitions_revoked({TopicPartition(TOPIC, 0)})
        assert service._writing.cancelled() or service._writing.done()
        await service.stop()

    asyncio.run(run())
    assert consumer.commits == []


def test_readiness_names_the_assigned_partitions():
    consumer = FakeConsumer([])

    async def run():
        service = ingest(consumer, lambda b, d: asyncio.sleep(0))
        assert service.assignment_check() == (False, "ingest consumer not in its group yet")
        await service.start()
        check = service.assignment_check()
        await service.stop()
        return check

    assert asyncio.run(run()) == (True, "1 interactions partitions assigned: [0]")
