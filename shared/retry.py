"""Retry with capped exponential backoff until the work succeeds.

For consumer loops that must not leave their batch: leaving the loop acks (commits) what
it holds, so a failure, whatever its class, is retried and never skipped. Retriable
errors log a warning; anything else logs an error with its traceback, because a
partition stalled on a bug is better than an event lost to one, and it shows on /readyz.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

from .errors import is_retriable

T = TypeVar("T")
log = logging.getLogger(__name__)


async def retry_until_done(
    work: Callable[[], Awaitable[T]],
    *,
    what: str,
    first_delay: float = 0.2,
    max_delay: float = 10.0,
    on_failure: Callable[[BaseException], None] | None = None,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> T:
    delay = first_delay
    while True:
        try:
            return await work()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - retried, reported, never swallowed
            if on_failure is not None:
                on_failure(exc)
            if is_retriable(exc):
                log.warning("%s failed (%s); retrying in %.1f s", what, exc, delay)
            else:
                log.error("%s failed; retrying in %.1f s", what, delay, exc_info=exc)
            await sleep(delay)
            delay = min(delay * 2, max_delay)
