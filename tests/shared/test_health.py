"""/livez and /readyz semantics: every check reported, 503 with the failing check's detail."""

from __future__ import annotations

import asyncio
import time

from shared.health import Health


def ready(health: Health) -> tuple[int, dict]:
    return asyncio.run(health.ready())


async def async_ok():
    await asyncio.sleep(0)
    return True, "partitions assigned"


def test_live_is_200_without_running_checks():
    calls = []
    health = Health("recommender", checks={"db": lambda: calls.append(1) or (False, "down")})
    assert health.live() == (200, {"service": "recommender", "status": "ok"})
    assert calls == []  # a database outage must not make the process look dead


def test_ready_is_200_when_every_check_passes():
    health = Health("recommender")
    health.add("postgres", lambda: (True, "reachable"))
    health.add("kafka", async_ok)
    status, body = ready(health)
    assert status == 200
    assert body == {
        "service": "recommender",
        "status": "ok",
        "checks": {
            "postgres": {"ok": True, "detail": "reachable"},
            "kafka": {"ok": True, "detail": "partitions assigned"},
        },
    }


def test_ready_without_checks_is_200():
    assert ready(Health("generator"))[0] == 200


def test_failing_check_gives_503_with_its_detail():
    health = Health("generator")
    health.add("kafka", async_ok)
    health.add("model", lambda: (False, "model not loaded yet"))
    status, body = ready(health)
    assert status == 503
    assert body["status"] == "fail"
    assert body["checks"]["model"] == {"ok": False, "detail": "model not loaded yet"}
    assert body["checks"]["kafka"]["ok"] is True


def test_raising_check_gives_503_with_the_exception():
    def postgres():
        raise ConnectionRefusedError("connection to 127.0.0.1:5432 refused")

    async def kafka():
        raise RuntimeError("no partitions assigned")

    health = Health("recommender", checks={"postgres": postgres, "kafka": kafka})
    status, body = ready(health)
    assert status == 503
    assert body["checks"]["postgres"] == {
        "ok": False,
        "detail": "ConnectionRefusedError: connection to 127.0.0.1:5432 refused",
    }
    assert body["checks"]["kafka"] == {
        "ok": False,
        "detail": "RuntimeError: no partitions assigned",
    }


def test_slow_async_check_times_out():
    async def hangs():
        await asyncio.sleep(30)
        return True, "never"

    health = Health("recommender", timeout_seconds=0.05)
    health.add("postgres", hangs)
    health.add("kafka", async_ok)
    started = time.monotonic()
    status, body = ready(health)
    assert time.monotonic() - started < 5
    assert status == 503
    assert body["checks"]["postgres"]["ok"] is False
    assert body["checks"]["postgres"]["detail"] == "timed out after 0.05 s"
    assert body["checks"]["kafka"]["ok"] is True


def test_truthy_results_are_reported_as_booleans():
    health = Health("x", checks={"c": lambda: (1, "one")})
    status, body = ready(health)
    assert status == 200 and body["checks"]["c"]["ok"] is True


def test_quiet_readiness_hides_failure_details_but_names_the_check():
    def leaky():
        raise ConnectionError("could not connect to db.internal:5432 as admin")

    health = Health("recommender", checks={"postgres": leaky, "kafka": lambda: (True, "fine")})
    status, body = asyncio.run(health.ready(verbose=False))
    assert status == 503
    assert body["checks"]["postgres"] == {"ok": False, "detail": "failing (details in the log)"}
    assert "db.internal" not in str(body)


def test_blocking_check_runs_off_the_event_loop_with_the_timeout():
    def slow():
        time.sleep(1)
        return True, "late"

    health = Health("x", checks={"slow": slow}, timeout_seconds=0.05)

    async def probe():
        started = time.monotonic()
        result = await health.ready()
        return result, time.monotonic() - started

    (status, body), elapsed = asyncio.run(probe())
    assert elapsed < 0.9  # the loop was free: the answer came at the timeout
    assert body["checks"]["slow"] == {"ok": False, "detail": "timed out after 0.05 s"}
