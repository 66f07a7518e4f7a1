"""Dynamic batching: take what is queued, up to a size, waiting a little for more; take
out what can no longer wait; run a batch, splitting it when it fails."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from .errors import Stopping

T = TypeVar("T")
R = TypeVar("R")
log = logging.getLogger(__name__)


async def next_batch(queue: asyncio.Queue[T], max_size: int, max_wait: float) -> list[T]:
    """Wait for one item, then gather more until ``max_size`` or ``max_wait`` seconds have
    passed since the first: a lone request waits at most ``max_wait``, a burst fills a batch."""
    batch = [await queue.get()]
    deadline = time.monotonic() + max_wait
    while len(batch) < max_size:
        try:
            batch.append(queue.get_nowait())
            continue
        except asyncio.QueueEmpty:
            pass
        left = deadline - time.monotonic()
        if left <= 0:
            break
        try:
            batch.append(await asyncio.wait_for(queue.get(), left))
        except TimeoutError:
            break
    return batch


def take_expired(queue: asyncio.Queue[T], expired: Callable[[T], bool]) -> list[T]:
    """Remove the items that are ``expired`` from ``queue`` and return them; the others
    stay, in their order. Synchronous, so nothing runs in between; putters waiting for
    room are woken as ``get_nowait`` frees it."""
    kept: list[T] = []
    taken: list[T] = []
    while not queue.empty():
        item = queue.get_nowait()
        (taken if expired(item) else kept).append(item)
    for item in kept:
        queue.put_nowait(item)
    return taken


async def run_or_split(
    run: Callable[[list[T]], Awaitable[list[R]]], batch: list[T]
) -> list[R | Exception]:
    """``run(batch)``, one result per item; if it raises, each item is run alone, so one
    the engine cannot take (or a batch too big for memory) fails no other. An item that
    fails alone too gets its exception in place of a result. Failures are logged;
    :class:`Stopping` is none, and goes up as it is."""
    try:
        return list(await run(batch))
    except Stopping:
        raise
    except Exception as exc:  # noqa: BLE001 - logged with its traceback, then split
        log.exception("a batch of %s failed", len(batch))
        if len(batch) == 1:
            return [exc]
    results: list[R | Exception] = []
    for item in batch:
        try:
            results += await run([item])
        except Stopping:
            raise
        except Exception as exc:  # noqa: BLE001 - the caller answers it
            log.exception("an item failed on its own too")
            results.append(exc)
    return results
