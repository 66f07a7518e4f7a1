"""Serving latency while the same worker retrains, against the same worker idle.

One real worker (``marquee serve recommender``) serves a model trained on MovieLens-100k
and has scheduled retrains on, due after :data:`TRIGGER_EVENTS` new interactions. Each
repetition measures two sides, in alternating order, at the same paced rate:

- **idle**: requests for a fixed window, nothing due;
- **retrain**: requests start, then :data:`TRIGGER_EVENTS` interactions are published;
  the worker ingests them and its scheduler (checking every second) starts a full retrain
  (held-out evaluation, fit, COPY, activation) and then serves the new version.

The retrain's window is measured, not assumed: from the moment the worker's trainer holds
the training lock (``pg_locks``, polled every 20 ms and matched by the worker's
``application_name``) until the first answer from the new version (each answer names its
``model_version``), so it covers the reload after the fit too. Only requests due inside
that window count for the retrain side; the notes give its length and how many requests
fell in it.

Requests are open loop: each leaves at its due time whatever earlier answers do, and its
latency counts from that due time (no coordinated omission). A failed or timed-out request
counts as :data:`CLIENT_TIMEOUT` seconds: a miss is never hidden.
"""

from __future__ import annotations

import asyncio
import random
import statistics
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import aiohttp

from services.recommender.model_store import ModelStore
from shared.data import movielens

from ._stack import Scratch, machine_load, percentile, publish, scratch, trained_worker
from .harness import BenchmarkError, Context, Result, benchmark

RATE = 200.0
IDLE_SECONDS = 10.0
#: Requests answered first on each side (connections opened) and not counted.
WARMUP = 200
#: A retrain that is not served by then fails the run (bounded, whatever happens).
MAX_SECONDS = 300.0
#: Requests go on this long after the new version answered.
TAIL_SECONDS = 0.5
CLIENT_TIMEOUT = 30.0
TRIGGER_EVENTS = 100
K = 10
TARGET_P99_MS = 50.0
LOCK_POLL_SECONDS = 0.02

#: The first model comes from `marquee train`; after it, only the published triggers make
#: a retrain due (checked every second, as the scheduler does, only faster).
SCHEDULED = {
    "MARQUEE_RECOMMENDER_RETRAIN_CHECK_SECONDS": "1",
    "MARQUEE_RECOMMENDER_RETRAIN_AFTER_EVENTS": str(TRIGGER_EVENTS),
    "MARQUEE_RECOMMENDER_RETRAIN_EVERY_SECONDS": "0",
    "MARQUEE_RECOMMENDER_RETRAIN_MIN_EVENTS": str(10**9),
}


@benchmark(
    "recommender_serving_p99_during_retrain",
    unit="ms",
    higher_is_better=False,
    # The target is on the figure itself (issue: p99 ≤ 50 ms during a retrain), not a ratio.
    target_range=(None, 50.0),
    description=f"""
        p99 latency of `GET /users/{{id}}/recommendations?k=10` from one real worker
        (`marquee serve recommender`, MovieLens-100k ingested through it, first model by
        `marquee train`) at a paced {RATE:.0f} requests/s, open loop, while that worker runs a
        full scheduled retrain (evaluation, fit, COPY, activation, reload; triggered by
        {TRIGGER_EVENTS} new interactions): only requests due between the trainer taking
        the training lock and the first answer from the new version count. Baseline: p99
        of the same worker idle, {IDLE_SECONDS:.0f} s at the same rate. Sides interleaved,
        samples pooled over the repetitions. Target (issue 15): p99 ≤ {TARGET_P99_MS:.0f} ms
        during the retrain.
    """,
)
def recommender_serving_p99_during_retrain(ctx: Context) -> Result:
    rng = random.Random(15)
    runs: dict[str, list[Run]] = {"idle": [], "retrain": []}
    with scratch(ctx, "busy") as stack, trained_worker(stack, **SCHEDULED) as running:
        store = ModelStore(stack.engine)
        version = store.active()
        if version is None:
            raise BenchmarkError("no active model version to serve")
        users = store.factors(version.id, "user")[0]
        with LockWatch(stack) as lock:
            for rep in range(ctx.repeat):
                sides: dict[str, Callable[[], Run]] = {
                    "idle": lambda: _idle(running.port, users, rng),
                    "retrain": lambda rep=rep: _retrain(stack, running.port, users, rng, lock, rep),
                }
                for side in sides if rep % 2 == 0 else reversed(sides):
                    runs[side].append(sides[side]())
                    ctx.progress(f"rep {rep + 1}/{ctx.repeat} {side:>7}: {runs[side][-1].line()}")

    during = [s for run in runs["retrain"] for s in run.latencies]
    idle = [s for run in runs["idle"] for s in run.latencies]
    value, baseline = percentile(during, 99), percentile(idle, 99)
    windows = [run.window for run in runs["retrain"]]
    failed = sum(run.failed for side in runs.values() for run in side)
    return Result(
        value=value,
        baseline_name="same worker idle p99",
        baseline_value=baseline,
        notes=(
            f"{RATE:.0f} requests/s; pooled: {len(during):,} requests during retrains, "
            f"{len(idle):,} idle",
            *(f"{side}: " + "; ".join(run.line() for run in runs[side]) for side in runs),
            "overlap: the retrain windows (lock taken → new version answering) lasted "
            + ", ".join(f"{w:.2f} s" for w in windows)
            + f"; every one inside the measured requests (sent from {WARMUP / RATE:.0f} s "
            "before the trigger until after the new version answered)",
            f"failed or timed-out requests (counted as {CLIENT_TIMEOUT:.0f} s): {failed}",
            "client's longest delay in sending (part of the figures): "
            + "; ".join(
                f"{side} " + ", ".join(f"{r.lag:.1f} ms" for r in runs[side]) for side in runs
            ),
            f"absolute target p99 ≤ {TARGET_P99_MS:g} ms during the retrain: "
            + ("met" if value <= TARGET_P99_MS else "MISSED")
            + f" ({value:.2f} ms; idle {baseline:.2f} ms)",
            machine_load(),
        ),
    )


@dataclass
class Run:
    """One side of one repetition: the latencies counted (ms) and what framed them."""

    latencies: list[float]
    failed: int = 0
    #: The client's own longest delay in sending (ms): if it grew, the client was starved.
    lag: float = 0.0
    #: The retrain side: seconds from the lock taken to the new version answering.
    window: float = 0.0
    held: float = 0.0
    #: The retrain side: the slowest answer (ms) in each part of the window.
    slowest: dict[str, float] = field(default_factory=dict)

    def line(self) -> str:
        ms = self.latencies
        line = f"{len(ms)} requests, p50 {statistics.median(ms):.2f} ms"
        line += f", p99 {percentile(ms, 99):.2f} ms"
        if self.window:
            slowest = ", ".join(f"{part} {ms:.0f} ms" for part, ms in self.slowest.items())
            line += (
                f" (window {self.window:.2f} s, lock held {self.held:.2f} s; slowest: {slowest})"
            )
        return line + (f", {self.failed} failed" if self.failed else "")


@dataclass
class Sample:
    due: float  # time.monotonic() when the request was due
    latency: float  # seconds from due to answer (CLIENT_TIMEOUT if it failed)
    version: int | None
    ok: bool
    lag: float  # seconds from due to sent: the client's own delay (part of latency)


@dataclass
class LockWatch:
    """When the worker's trainer held the training lock: ``(taken, released)`` intervals on
    ``time.monotonic()``, from a thread polling ``pg_locks`` (released is ``None`` while held)."""

    stack: Scratch
    held: list[list[float | None]] = field(default_factory=list)
    error: BaseException | None = None

    def __enter__(self) -> LockWatch:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, name="lock-watch", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(10)

    def _poll(self) -> None:
        store, me = ModelStore(self.stack.engine), self.stack.settings.kafka_client_id
        try:
            while not self._stop.wait(LOCK_POLL_SECONDS):
                held = me in store.training_lock_holders()
                now = time.monotonic()
                if held and (not self.held or self.held[-1][1] is not None):
                    self.held.append([now, None])
                elif not held and self.held and self.held[-1][1] is None:
                    self.held[-1][1] = now
        except Exception as exc:  # noqa: BLE001 - reported by the run that needs it
            self.error = exc

    def first_after(self, since: float) -> tuple[float, float | None] | None:
        if self.error is not None:
            raise BenchmarkError(f"watching pg_locks failed: {self.error}")
        found = [(taken, released) for taken, released in self.held if taken >= since]
        return found[0] if found else None


def _idle(port: int, users: list[str], rng: random.Random) -> Run:
    count = WARMUP + int(RATE * IDLE_SECONDS)
    samples = asyncio.run(_paced(port, users, rng, until=lambda n, _: n >= count))
    return _run(samples[WARMUP:])


def _retrain(
    stack: Scratch, port: int, users: list[str], rng: random.Random, lock: LockWatch, rep: int
) -> Run:
    ratings = movielens.load_ratings()[:TRIGGER_EVENTS]
    trigger = [
        movielens.to_event(r).model_copy(update={"id": f"busy{rep}-{n}"})
        for n, r in enumerate(ratings)
    ]
    state: dict[str, float | None] = {"sent": None, "served": None, "old": None}
    scanned = 0  # answers already looked at for the new version

    def done(n: int, samples: list[Sample]) -> bool:
        nonlocal scanned
        if n == WARMUP and state["sent"] is None:
            state["sent"] = time.monotonic()
            state["old"] = max((s.version or 0) for s in samples)
            threading.Thread(target=publish, args=(stack, trigger), daemon=True).start()
        if state["sent"] is None:
            return False
        if time.monotonic() - state["sent"] > MAX_SECONDS:
            raise BenchmarkError(
                f"no retrain was served within {MAX_SECONDS:.0f} s of the trigger; "
                f"lock intervals seen: {lock.held}"
            )
        if state["served"] is None:
            newer = [s.due for s in samples[scanned:] if s.ok and (s.version or 0) > state["old"]]
            scanned = len(samples)
            state["served"] = min(newer) if newer else None
        held = lock.first_after(state["sent"])
        return (
            state["served"] is not None
            and held is not None
            and held[1] is not None
            and time.monotonic() > state["served"] + TAIL_SECONDS
        )

    samples = asyncio.run(_paced(port, users, rng, until=done))
    held = lock.first_after(state["sent"])
    if held is None or held[1] is None:
        raise BenchmarkError("the trainer's lock was never seen taken and released")
    taken, released = held
    end = max(released, state["served"])
    inside = [s for s in samples if taken <= s.due <= end]
    if not inside:
        raise BenchmarkError("no request fell inside the retrain's window")
    # Where the slow answers were: while the trainer held the lock, or in the reload after.
    parts = {
        "lock held": [s.latency * 1000 for s in inside if s.due <= released],
        "reload": [s.latency * 1000 for s in inside if s.due > released],
    }
    run = _run(inside)
    run.window, run.held = end - taken, released - taken
    run.slowest = {part: max(ms, default=0.0) for part, ms in parts.items()}
    return run


def _run(samples: list[Sample]) -> Run:
    return Run(
        [s.latency * 1000 for s in samples],
        sum(not s.ok for s in samples),
        lag=max(s.lag for s in samples) * 1000,
    )


async def _paced(
    port: int,
    users: list[str],
    rng: random.Random,
    *,
    until: Callable[[int, list[Sample]], bool],
) -> list[Sample]:
    """Requests at RATE, open loop, until ``until(sent, samples so far)`` says stop (or
    MAX_SECONDS pass); returns them in the order they were due."""
    loop = asyncio.get_running_loop()
    samples: list[Sample] = []

    async def one(session: aiohttp.ClientSession, user: str, due: float) -> None:
        lag = loop.time() - due
        try:
            async with session.get(
                f"/users/{user}/recommendations", params={"k": str(K)}
            ) as response:
                body = await response.json()
            ok = response.status == 200 and len(body.get("items", ())) == K
            version = body.get("model_version")
            latency = loop.time() - due
        except (aiohttp.ClientError, TimeoutError, ValueError):
            ok, version, latency = False, None, CLIENT_TIMEOUT
        samples.append(Sample(due, latency if ok else CLIENT_TIMEOUT, version, ok, lag))

    connector = aiohttp.TCPConnector(limit=64)
    timeout = aiohttp.ClientTimeout(total=CLIENT_TIMEOUT)
    base = f"http://127.0.0.1:{port}"
    async with aiohttp.ClientSession(base, connector=connector, timeout=timeout) as session:
        start = loop.time() + 0.05
        tasks, n = [], 0
        while n < RATE * MAX_SECONDS * 2 and not until(n, samples):
            due = start + n / RATE
            if (delay := due - loop.time()) > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(session, rng.choice(users), due)))
            n += 1
        await asyncio.gather(*tasks)
    return sorted(samples, key=lambda s: s.due)
