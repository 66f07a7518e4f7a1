import asyncio

import pytest

from shared.errors import InvalidEvent, TransientError
from shared.retry import retry_until_done


def test_retries_any_failure_with_capped_backoff_until_success():
    attempts, slept, seen = [], [], []
    outcomes = [TransientError("db down"), TransientError("db down"), InvalidEvent("bug"), None]

    async def work():
        attempts.append(1)
        outcome = outcomes[len(attempts) - 1]
        if outcome is not None:
            raise outcome
        return "done"

    async def sleep(seconds):
        slept.append(seconds)

    result = asyncio.run(
        retry_until_done(
            work, what="t", first_delay=1, max_delay=3, on_failure=seen.append, sleep=sleep
        )
    )
    assert result == "done"
    assert slept == [1, 2, 3]
    assert [type(e) for e in seen] == [TransientError, TransientError, InvalidEvent]


def test_cancellation_is_not_retried():
    async def work():
        raise asyncio.CancelledError

    with pytest.raises(asyncio.CancelledError):
        asyncio.run(retry_until_done(work, what="t"))
