import asyncio
import time

import pytest

from services.generator.batching import next_batch, run_or_split


def run(coro):
    return asyncio.run(coro)


def test_a_burst_fills_a_batch_without_waiting():
    async def go():
        queue = asyncio.Queue()
        for n in range(10):
            queue.put_nowait(n)
        started = time.monotonic()
        first = await next_batch(queue, 4, max_wait=5)
        return first, time.monotonic() - started, queue.qsize()

    batch, took, left = run(go())
    assert batch == [0, 1, 2, 3] and left == 6 and took < 1


def test_a_lone_request_waits_at_most_max_wait_and_late_ones_join():
    async def go():
        queue = asyncio.Queue()
        queue.put_nowait("a")
        asyncio.get_running_loop().call_later(0.05, queue.put_nowait, "b")
        started = time.monotonic()
        batch = await next_batch(queue, 8, max_wait=0.3)
        return batch, time.monotonic() - started

    batch, took = run(go())
    assert batch == ["a", "b"] and 0.25 <= took < 1.5


def test_a_failed_batch_is_split_so_only_the_poison_fails():
    calls = []

    async def engine(items):
        calls.append(list(items))
        if "poison" in items:
            raise MemoryError("out of memory")
        return [item.upper() for item in items]

    results = run(run_or_split(engine, ["a", "poison", "b"]))
    assert results[0] == "A" and results[2] == "B" and isinstance(results[1], MemoryError)
    assert calls == [["a", "poison", "b"], ["a"], ["poison"], ["b"]]
    assert run(run_or_split(engine, ["a", "b"])) == ["A", "B"]  # no failure, one call
    (alone,) = run(run_or_split(engine, ["poison"]))  # a batch of one is not tried twice
    assert isinstance(alone, MemoryError) and calls[-1] == ["poison"] and calls[-2] == ["a", "b"]


def test_expired_items_are_taken_out_and_the_rest_keep_their_order_and_wake_putters():
    from services.generator.batching import take_expired

    async def go():
        queue = asyncio.Queue(maxsize=4)
        for n in (1, 8, 2, 9):
            queue.put_nowait(n)
        waiting = asyncio.ensure_future(queue.put(3))  # the queue is full: it waits
        await asyncio.sleep(0)
        taken = take_expired(queue, lambda n: n >= 8)
        await asyncio.wait_for(waiting, 1)  # room was made, so the putter got in
        return taken, [queue.get_nowait() for _ in range(queue.qsize())]

    taken, left = run(go())
    assert taken == [8, 9] and left == [1, 2, 3]


def test_a_stop_is_no_failure_and_is_not_split():
    from services.generator.errors import Stopping

    calls = []

    async def engine(items):
        calls.append(list(items))
        raise Stopping("stopping")

    with pytest.raises(Stopping):
        run(run_or_split(engine, ["a", "b"]))
    assert calls == [["a", "b"]]
