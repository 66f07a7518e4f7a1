"""Dynamic batching: take what is queued, up to a size, waiting a little for more."""

from __future__ import annotations

import asyncio
import time
from typing import TypeVar

T = TypeVar("T")


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
