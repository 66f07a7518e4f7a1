"""The collector against the SDK it publishes through: throughput of batches, beacon latency.

Both run the real worker (``marquee serve collector``) on a scratch stack, with an app key
made by the same store ``marquee apps add`` uses. Every event is confirmed by the broker
before the collector answers, so an answer counted here is an event on the topic.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import time
import uuid

import aiohttp

from services.collector.store import AppStore
from shared.events import InteractionEvent
from shared.kafka.publisher import Publisher

from ._stack import machine_load, open_loop, percentile, scratch, worker
from .harness import BenchmarkError, Context, Result, benchmark
from .publisher import WARMUP, sdk_rate

SOURCE = "urn:bench:web"
BATCH = 50
CONNECTIONS = 8
BEACON_RATE = 200.0
BEACON_SECONDS = 20.0
BEACON_WARMUP = 200
TARGET_P99_MS = 20.0
#: No rate limit in the way: the figure is the collector's, not the token bucket's.
UNLIMITED = {
    "MARQUEE_COLLECTOR_RATE_PER_SECOND": "1000000000",
    "MARQUEE_COLLECTOR_RATE_BURST": "1000000000",
}


def _events(count: int) -> list[InteractionEvent]:
    run = uuid.uuid4().hex[:8]
    return [
        InteractionEvent.create(
            {"user_id": f"u{n % 943}", "item_id": f"i{n % 1682}", "action": "view"},
            source=SOURCE,
            id=f"{run}-{n:08d}",
        )
        for n in range(count)
    ]


def _wire(event: InteractionEvent) -> dict:
    return json.loads(event.model_dump_json(exclude_none=True))


@benchmark(
    "collector_throughput",
    unit="events/s",
    target_ratio=0.7,
    description="""
        Events per second through the collector's `POST /v1/events` (the real worker,
        `marquee serve collector`): batched CloudEvents (`application/cloudevents-batch+json`,
        50 `marquee.interaction.v1` events a request, ~300 bytes each), 8 keep-alive
        connections (aiohttp), each answer awaited (the collector answers once the broker
        confirmed every event), after an untimed warm-up. Baseline: the SDK's own
        `Publisher.publish` + flush on the same kind of events in the same run (what
        `publisher_throughput` measures, with interactions). Median of interleaved
        repetitions. Target (issue 18): ≥ 70% of the SDK.
    """,
)
def collector_throughput(ctx: Context) -> Result:
    rates: dict[str, list[float]] = {"collector": [], "sdk": []}
    with scratch(ctx, "coll") as stack:
        _, key = AppStore(stack.engine).add("bench", ["marquee.interaction.v1"], SOURCE)
        with worker(stack, wait_for="/readyz", service="collector", **UNLIMITED) as running:
            for rep in range(ctx.repeat):
                sides = {
                    "collector": lambda: asyncio.run(
                        _batches(running.port, key, _events(ctx.events + WARMUP))
                    ),
                    "sdk": lambda: sdk_rate(stack.settings, _events(ctx.events + WARMUP)),
                }
                for side in sides if rep % 2 == 0 else reversed(sides):
                    rates[side].append(sides[side]())
                    ctx.progress(
                        f"rep {rep + 1}/{ctx.repeat} {side:>9}: {rates[side][-1]:,.0f} events/s"
                    )
    return Result(
        value=statistics.median(rates["collector"]),
        baseline_name="SDK publisher",
        baseline_value=statistics.median(rates["sdk"]),
        notes=(
            f"{ctx.events:,} events per side and repetition, {BATCH} a request, "
            f"{CONNECTIONS} connections",
            *(f"{side}: {', '.join(f'{r:,.0f}' for r in rates[side])} events/s" for side in rates),
            machine_load(),
        ),
    )


async def _batches(port: int, key: str, events: list[InteractionEvent]) -> float:
    bodies = [
        json.dumps([_wire(e) for e in events[n : n + BATCH]]).encode()
        for n in range(0, len(events), BATCH)
    ]
    warmup, timed = bodies[: WARMUP // BATCH], bodies[WARMUP // BATCH :]
    headers = {
        "Authorization": f"Bearer {key}",
        "Content-Type": "application/cloudevents-batch+json",
    }
    connector = aiohttp.TCPConnector(limit=CONNECTIONS)
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(
        f"http://127.0.0.1:{port}", connector=connector, timeout=timeout, headers=headers
    ) as session:

        async def run(queue: list[bytes]) -> None:
            while queue:
                body = queue.pop()
                async with session.post("/v1/events", data=body) as response:
                    answer = await response.json()
                if response.status != 200 or answer.get("accepted") != BATCH:
                    raise BenchmarkError(f"a batch answered {response.status}: {str(answer)[:300]}")

        async def drive(queue: list[bytes]) -> None:
            await asyncio.gather(*(run(queue) for _ in range(CONNECTIONS)))

        await drive(list(warmup))
        started = time.perf_counter()
        await drive(list(timed))
        return len(timed) * BATCH / (time.perf_counter() - started)


@benchmark(
    "collector_p99",
    unit="ms",
    higher_is_better=False,
    target_range=(None, TARGET_P99_MS),
    description="""
        p99 latency of a one-event beacon through the collector (`POST /v1/events?key=...`,
        a `text/plain` body and an allowed `Origin`, as `navigator.sendBeacon` sends it) at
        200 requests/s, open loop (latency counted from each request's due time), aiohttp
        keep-alive client, 20 s per repetition after a warm-up; the answer comes once the
        broker confirmed the event. Baseline: p99 from due time to broker confirmation of the
        SDK's `Publisher.publish` in-process on the same schedule, open loop too: what the broker's confirmation costs
        before HTTP, keys, CORS and validation. Median of interleaved repetitions.
        Target (issue 18): p99 ≤ 20 ms (see the notes).
    """,
)
def collector_p99(ctx: Context) -> Result:
    count = BEACON_WARMUP + int(BEACON_RATE * BEACON_SECONDS)
    runs: dict[str, list[float]] = {"beacon": [], "sdk": []}
    origin = "https://bench.example"
    with scratch(ctx, "beacon") as stack:
        _, key = AppStore(stack.engine).add("bench", ["marquee.interaction.v1"], SOURCE)
        env = {**UNLIMITED, "MARQUEE_COLLECTOR_CORS_ORIGINS": origin}
        with (
            worker(stack, wait_for="/readyz", service="collector", **env) as running,
            Publisher(stack.settings) as publisher,
        ):
            for rep in range(ctx.repeat):
                sides = {
                    "beacon": lambda: asyncio.run(
                        _beacons(running.port, key, origin, _events(count))
                    ),
                    "sdk": lambda: _sdk_open_loop(publisher, _events(count)),
                }
                for side in sides if rep % 2 == 0 else reversed(sides):
                    runs[side].append(sides[side]())
                    ctx.progress(
                        f"rep {rep + 1}/{ctx.repeat} {side:>6}: p99 {runs[side][-1]:.2f} ms"
                    )
    value = statistics.median(runs["beacon"])
    return Result(
        value=value,
        baseline_name="SDK publish → confirmed p99",
        baseline_value=statistics.median(runs["sdk"]),
        notes=(
            f"{int(BEACON_RATE * BEACON_SECONDS):,} timed requests per side and repetition "
            f"at {BEACON_RATE:,.0f}/s",
            *(f"{side}: {', '.join(f'{r:.2f}' for r in runs[side])} ms" for side in runs),
            f"absolute target p99 ≤ {TARGET_P99_MS:g} ms: "
            + ("met" if value <= TARGET_P99_MS else "MISSED"),
            machine_load(),
        ),
    )


async def _beacons(port: int, key: str, origin: str, events: list[InteractionEvent]) -> float:
    loop = asyncio.get_running_loop()
    latencies = [0.0] * len(events)
    failures: list[str] = []
    headers = {"Origin": origin, "Content-Type": "text/plain;charset=UTF-8"}

    async def one(session: aiohttp.ClientSession, n: int, body: bytes, due: float) -> None:
        async with session.post(f"/v1/events?key={key}", data=body, headers=headers) as response:
            answer = await response.read()
        latencies[n] = loop.time() - due
        if response.status != 202:
            failures.append(f"{response.status} {answer[:200]!r}")

    bodies = [json.dumps(_wire(e)).encode() for e in events]
    connector = aiohttp.TCPConnector(limit=64)
    timeout = aiohttp.ClientTimeout(total=10)
    async with aiohttp.ClientSession(
        f"http://127.0.0.1:{port}", connector=connector, timeout=timeout
    ) as session:
        await open_loop(len(bodies), BEACON_RATE, lambda n, due: one(session, n, bodies[n], due))
    if failures:
        raise BenchmarkError(f"{len(failures)} beacon(s) failed, e.g. {failures[0]}")
    return percentile([s * 1000 for s in latencies[BEACON_WARMUP:]], 99)


def _sdk_open_loop(publisher: Publisher, events: list[InteractionEvent]) -> float:
    """p99 ms from each event's due time to its broker confirmation, sent on schedule
    whatever the confirmations do (the same open loop as the beacons)."""
    latencies = [0.0] * len(events)

    def confirmed(n: int, due: float):
        def record(_metadata) -> None:
            latencies[n] = time.perf_counter() - due

        return record

    start = time.perf_counter() + 0.05
    for n, event in enumerate(events):
        due = start + n / BEACON_RATE
        if (delay := due - time.perf_counter()) > 0:
            time.sleep(delay)
        publisher.publish(event).add_callback(confirmed(n, due))
    publisher.flush()
    return percentile([s * 1000 for s in latencies[BEACON_WARMUP:]], 99)
