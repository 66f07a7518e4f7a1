"""Interactions per second from the topic to committed Postgres rows: the batch ingest
against the Faust-stream path it replaced, in the same run.

The events are published before anything reads them, so every side measures consumption
only. A worker's rate comes from Postgres itself: every batch is one transaction and
``ingested_at`` defaults to ``now()`` (the transaction's start), so the span between the
first and the last transaction, and the rows committed after the first, give the steady
rate without start-up, rebalance or polling in it. Both workers are the same service
(benchmarks/_faust_ingest.py builds it with a Faust agent on ``interactions`` instead of
the batch ingest) with the same batch settings. A bare aiokafka consumer (no decoding, no
database) is noted: the ceiling of reading alone.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import time
from collections.abc import Callable

from aiokafka import AIOKafkaConsumer
from sqlalchemy import text

from shared.cli.load import load
from shared.data.synthetic import StreamSpec

from . import _faust_ingest
from ._stack import NO_RETRAINS, Scratch, machine_load, scratch, worker
from .harness import BenchmarkError, Context, Result, benchmark

EVENTS = 200_000
#: A newsroom's shape at a size one run can ingest several times over.
READERS, ARTICLES = 50_000, 5_000
#: The groups the two workers read in (batch: services/recommender/app.py; Faust: the app's).
GROUPS = {"batch": "marquee-recommender-ingest", "faust": "marquee-recommender"}
FAUST_INGEST = (sys.executable, "-m", _faust_ingest.__name__)
TARGET = 20_000


@benchmark(
    "recommender_ingest_throughput",
    unit="events/s",
    target_ratio=4.0,
    target_range=(TARGET, None),
    description="""
        Interactions per second from the `interactions` topic to committed Postgres rows
        (validated, one row per event id, user×item confidence aggregated, users and items
        registered) through the real recommender worker (`marquee serve recommender`, a
        subprocess: the batch ingest, aiokafka `getmany`, default batch settings, no model
        loaded), timed by the rows' own transaction timestamps. Baseline: the same worker
        with interactions read by a Faust agent (`take_events`, the path before issue 17)
        in the same run. A synthetic newsroom stream (shared/data/synthetic.py: 200,000
        events, 50,000 readers, 5,000 articles, 6 partitions), fresh topic prefix and
        schema, scheduled retrains off; median of interleaved repetitions. Targets (issue
        17): ≥ 4× the Faust-stream path, and ≥ 20,000 events/s on 2 cores (see the notes).
    """,
)
def recommender_ingest_throughput(ctx: Context) -> Result:
    events = max(EVENTS, ctx.events)
    with scratch(ctx, "ingest") as stack:
        spec = StreamSpec(users=READERS, items=ARTICLES, events=events, seed=17)
        started = time.monotonic()
        expected = load(stack.settings, spec, progress=False).confirmed
        ctx.progress(f"published {expected:,} events in {time.monotonic() - started:.0f} s")
        sides: dict[str, Callable[[int], float]] = {
            "batch": lambda rep: _worker(stack, expected, "batch"),
            "faust": lambda rep: _worker(stack, expected, "faust"),
            "bare": lambda rep: _bare(stack, expected, rep),
        }
        rates: dict[str, list[float]] = {side: [] for side in sides}
        for rep in range(ctx.repeat):
            order = list(sides) if rep % 2 == 0 else list(reversed(sides))
            for side in order:
                rates[side].append(sides[side](rep))
                ctx.progress(
                    f"rep {rep + 1}/{ctx.repeat} {side:>6}: {rates[side][-1]:,.0f} events/s"
                )
        batching = (
            stack.settings.recommender_ingest_batch_size,
            stack.settings.recommender_ingest_batch_seconds,
        )
    value, faust, bare = (statistics.median(rates[s]) for s in ("batch", "faust", "bare"))
    return Result(
        value=value,
        baseline_name="Faust-stream ingest (take_events agent)",
        baseline_value=faust,
        notes=(
            f"{expected:,} events per side and repetition; batches of at most "
            f"{batching[0]:,} events, reads waiting at most {batching[1]:g} s",
            *(f"{side}: {', '.join(f'{r:,.0f}' for r in rates[side])} events/s" for side in rates),
            f"batch ingest = {value / bare:.0%} of a bare aiokafka consumer ({bare:,.0f} events/s)",
            f"absolute target ≥ {TARGET:,} events/s: {'met' if value >= TARGET else 'MISSED'}",
            machine_load(),
        ),
    )


def _worker(stack: Scratch, expected: int, side: str) -> float:
    """One run of a fresh worker (``side``: batch or faust) over the whole topic into
    emptied tables."""
    with stack.engine.begin() as conn:
        conn.execute(text("TRUNCATE interactions, user_item, users, items CASCADE"))
    command = FAUST_INGEST if side == "faust" else None
    with worker(stack, command=command, **NO_RETRAINS):
        # Rarely: a count over 200k rows costs Postgres CPU the worker competes for.
        stack.wait_for_rows(expected, timeout=900, every=2.0)
    # Stopped, so the group is empty: the next repetition reads from the start again.
    stack.forget_group(f"{stack.settings.topic_prefix}{GROUPS[side]}")
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
