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


def database_error(kind: str, orig: Exception, **kwargs):
    from sqlalchemy import exc

    return getattr(exc, kind)("INSERT ...", {}, orig, **kwargs)


def test_database_errors_are_classified_by_class():
    import psycopg2

    from shared.errors import is_retriable

    # The server or the connection: may work next time.
    assert is_retriable(database_error("OperationalError", psycopg2.OperationalError("gone")))
    assert is_retriable(psycopg2.OperationalError("server closed the connection"))
    assert is_retriable(database_error("InterfaceError", psycopg2.InterfaceError("closed")))
    assert is_retriable(
        database_error("DBAPIError", Exception("lost"), connection_invalidated=True)
    )
    # The data: fails the same way on the same rows.
    assert not is_retriable(database_error("DataError", psycopg2.DataError("out of range")))
    assert not is_retriable(database_error("IntegrityError", psycopg2.IntegrityError("dup")))
    assert not is_retriable(psycopg2.errors.UntranslatableCharacter("\\u0000"))
    assert not is_retriable(ValueError("A string literal cannot contain NUL (0x00) characters."))
    assert not is_retriable(InvalidEvent("bad"))
    assert is_retriable(TransientError("db down"))
