"""Interactions per second from the topic to committed Postgres rows, through the real worker.

The events are published before anything reads them, so both sides measure consumption
only. The worker's rate comes from Postgres itself: every batch is one transaction and
``ingested_at`` defaults to ``now()`` (the transaction's start), so the span between the
first and the last transaction, and the rows committed after the first, give the steady
rate without start-up, rebalance or polling in it. The bare consumer is timed the same
way: from its first fetched batch to its last.

A third reader, noted but not the baseline, is Faust itself doing nothing with the same
batching (benchmarks/_faust_floor.py): what the worker could reach if its own work cost
nothing.
"""

from __future__ import annotations

import asyncio
import json
import math
import statistics
import subprocess
import sys
import time
from collections.abc import Callable

from aiokafka import AIOKafkaConsumer
from sqlalchemy import text

from . import _faust_floor
from ._stack import (
    NO_RETRAINS,
    ROOT,
    Scratch,
    free_port,
    machine_load,
    movielens_events,
    publish,
    scratch,
    worker,
)
from .harness import BenchmarkError, Context, Result, benchmark

MOVIELENS = 100_000
#: Faust names a worker's group ``<prefix>marquee-<service>`` (shared.service.create_app).
WORKER_GROUP = "marquee-recommender"


@benchmark(
    "recommender_ingest_throughput",
    unit="events/s",
    target_ratio=0.5,
    description="""
        Interactions per second from the `interactions` topic to committed Postgres rows
        (validated, one row per event id, user×item confidence aggregated, users and items
        registered) through the real recommender worker (`marquee serve recommender`, a
        subprocess, default batch settings, no model loaded), timed by the rows' own
        transaction timestamps. Baseline: a bare aiokafka consumer (no decoding, no
        database) reading the same pre-published topic in the same run; also noted: a
        Faust worker with the same batching that does nothing (the framework's ceiling).
        2× MovieLens-100k (200,000 events with distinct ids, 6 partitions), fresh topic
        prefix and schema, scheduled retrains off; median of interleaved repetitions.
        Targets (issue 3): ≥ 50% of the bare consumer's rate, and ≥ 20,000 events/s on
        2 cores (see the printed notes).
    """,
)
def recommender_ingest_throughput(ctx: Context) -> Result:
    copies = max(2, math.ceil(ctx.events / MOVIELENS))
    with scratch(ctx, "ingest") as stack:
        expected = publish(stack, movielens_events(copies))
        sides: dict[str, Callable[[int], float]] = {
            "bare": lambda rep: _bare(stack, expected, rep),
            "worker": lambda rep: _worker(stack, expected),
            "faust": lambda rep: _faust_floor_rate(stack, expected),
        }
        rates: dict[str, list[float]] = {side: [] for side in sides}
        for rep in range(ctx.repeat):
            order = list(sides) if rep % 2 == 0 else list(reversed(sides))
            for side in order:
                rates[side].append(sides[side](rep))
                ctx.progress(
                    f"rep {rep + 1}/{ctx.repeat} {side:>6}: {rates[side][-1]:,.0f} events/s"
                )
    value, bare, faust = (statistics.median(rates[s]) for s in ("worker", "bare", "faust"))
    batching = (
        stack.settings.recommender_ingest_batch_size,
        stack.settings.recommender_ingest_batch_seconds,
    )
    return Result(
        value=value,
        baseline_name="bare aiokafka consumer",
        baseline_value=bare,
        notes=(
            f"{expected:,} events per side and repetition; batches of "
            f"{batching[0]:,} events or {batching[1]:g} s",
            *(f"{side}: {', '.join(f'{r:,.0f}' for r in rates[side])} events/s" for side in rates),
            f"worker = {value / faust:.0%} of a Faust worker doing nothing "
            f"({faust:,.0f} events/s, {faust / bare:.1%} of the bare consumer)",
            f"absolute target ≥ 20,000 events/s: {'met' if value >= 20_000 else 'MISSED'}",
            machine_load(),
        ),
    )


def _worker(stack: Scratch, expected: int) -> float:
    """One run of a fresh worker over the whole topic into emptied tables."""
    with stack.engine.begin() as conn:
        conn.execute(text("TRUNCATE interactions, user_item, users, items CASCADE"))
    with worker(stack, **NO_RETRAINS):
        # Rarely: a count over 200k rows costs Postgres CPU the worker competes for.
        stack.wait_for_rows(expected, timeout=900, every=2.0)
    # Stopped, so the group is empty: the next repetition reads from the start again.
    stack.forget_group(f"{stack.settings.topic_prefix}{WORKER_GROUP}")
    with stack.engine.connect() as conn:
        first, span = conn.execute(
            text(
                "SELECT min(ingested_at),"
                " extract(epoch FROM max(ingested_at) - min(ingested_at)) FROM interactions"
            )
        ).one()
        in_first = conn.execute(
            text("SELECT count(*) FROM interactions WHERE ingested_at = :t"), {"t": first}
        ).scalar_one()
    if not span:
        raise BenchmarkError("the worker stored everything in one transaction: publish more")
    return (expected - in_first) / float(span)


def _faust_floor_rate(stack: Scratch, expected: int) -> float:
    marker = _faust_floor.MARKER
    done = subprocess.run(
        (sys.executable, "-m", _faust_floor.__name__, str(expected)),
        env=stack.env(MARQUEE_HTTP_PORT=str(free_port())),
        capture_output=True,
        text=True,
        timeout=900,
        cwd=ROOT,
    )
    stack.forget_group(f"{stack.settings.topic_prefix}marquee-{marker}")
    for line in done.stdout.splitlines():
        if line.startswith(f"{marker} "):
            return json.loads(line.removeprefix(f"{marker} "))["rate"]
    output = (done.stdout + done.stderr)[-2000:]
    raise BenchmarkError(f"the Faust floor worker gave no rate:\n{output}")


def _bare(stack: Scratch, expected: int, rep: int) -> float:
    return asyncio.run(_consume(stack, expected, group=f"{stack.settings.topic_prefix}bare-{rep}"))


async def _consume(stack: Scratch, expected: int, group: str) -> float:
    consumer = AIOKafkaConsumer(
        stack.interactions_topic,
        bootstrap_servers=stack.settings.kafka_bootstrap_servers,
        client_id=stack.settings.kafka_client_id,
        group_id=group,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    try:
        seen = in_first = 0
        first = last = 0.0
        deadline = time.monotonic() + 600
        while seen < expected:
            if time.monotonic() > deadline:
                raise BenchmarkError(f"bare consumer: only {seen:,} of {expected:,} in 600 s")
            batches = await consumer.getmany(timeout_ms=1_000)
            got = sum(len(records) for records in batches.values())
            if not got:
                continue
            last = time.perf_counter()
            if not seen:
                first, in_first = last, got
            seen += got
    finally:
        await consumer.stop()
    if last == first:
        raise BenchmarkError("the bare consumer got everything in one fetch: publish more")
    return (seen - in_first) / (last - first)
