"""The /livez + /readyz convention every service follows.

``/livez``: the process and its event loop answer (no dependency checks: a restart would
not fix a database outage). ``/readyz``: every registered check passes (Kafka partitions
assigned, Postgres reachable, model loaded, ...). Both answer JSON; /readyz is 503 when
any check fails, with the failing check's detail so an operator knows what to fix.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

log = logging.getLogger(__name__)

CheckResult = tuple[bool, str]
Check = Callable[[], CheckResult | Awaitable[CheckResult]]


@dataclass
class Health:
    service: str
    checks: dict[str, Check] = field(default_factory=dict)
    timeout_seconds: float = 2.0

    def add(self, name: str, check: Check) -> None:
        self.checks[name] = check

    def live(self) -> tuple[int, dict]:
        return 200, {"service": self.service, "status": "ok"}

    async def _run(self, check: Check) -> dict:
        try:
            if inspect.iscoroutinefunction(check):
                outcome = await asyncio.wait_for(check(), self.timeout_seconds)
            else:
                # A blocking check (a database ping) must not stall the event loop.
                outcome = await asyncio.wait_for(asyncio.to_thread(check), self.timeout_seconds)
                if inspect.isawaitable(outcome):
                    outcome = await asyncio.wait_for(outcome, self.timeout_seconds)
            ok, detail = outcome
        except TimeoutError:
            ok, detail = False, f"timed out after {self.timeout_seconds:g} s"
        except Exception as exc:  # noqa: BLE001 - a failing check is a result, not a crash
            ok, detail = False, f"{type(exc).__name__}: {exc}"
        return {"ok": bool(ok), "detail": detail}

    async def ready(self, verbose: bool = True) -> tuple[int, dict]:
        """Run every check concurrently (one slow dependency must not multiply the probe's
        latency). Without ``verbose`` the body names failing checks but not their details,
        which can carry host names: probes answer anyone, details only the token holder."""
        outcomes = await asyncio.gather(*(self._run(c) for c in self.checks.values()))
        results = dict(zip(self.checks, outcomes, strict=True))
        if not verbose:
            for name, result in results.items():
                if not result["ok"]:
                    log.warning("readiness check %s failed: %s", name, result["detail"])
                result["detail"] = "ok" if result["ok"] else "failing (details in the log)"
        ready = all(r["ok"] for r in results.values())
        body = {"service": self.service, "status": "ok" if ready else "fail", "checks": results}
        return (200 if ready else 503), body
