"""How soon a click shows in the user's recommendations over HTTP, without a retrain.

The signal: a known user's current top recommendation (seen items excluded) is liked;
once the worker has stored the like and folded the user in, that item is seen, so it
must leave the list. Nothing else changes the user meanwhile (no other traffic for them,
scheduled retrains off), so the first answer without it is the moment the click counts.

The baseline, measured on the same events in the same polling loop, is the moment the
interaction's row is committed in Postgres: the part of the delay that batching and the
write cost before serving can react at all.
"""

from __future__ import annotations

import random
import statistics
import time

from sqlalchemy import text

from shared.events import InteractionEvent
from shared.kafka.publisher import Publisher

from ._stack import Client, Scratch, Worker, publish_to_serve, scratch, trained_worker
from .harness import BenchmarkError, Context, Result, benchmark

#: Samples per repetition (each is one like, for a different user).
SAMPLES = 20
#: Between two looks at the answer and the database; bounds the error of each sample.
POLL_SECONDS = 0.005
TIMEOUT_SECONDS = 10.0
TARGET_P95_MS = 1000.0
SOURCE = "urn:marquee:bench-freshness"


@benchmark(
    "recommender_freshness_p95",
    unit="ms",
    higher_is_better=False,
    description="""
        p95 time from publishing a `like` (SDK `publish_sync`, confirmed) to the first
        `GET /users/{id}/recommendations?exclude_seen=true` answer that reflects it: the
        liked item was the user's top recommendation, and leaves the list once the worker
        stored the like and folded the user in (no retrain). Real worker (`marquee serve
        recommender`, default batching), model trained by `marquee train` on MovieLens-100k
        ingested through the worker, one like at a time for distinct users, polled every
        5 ms. Baseline: p95 from the same publish to the interaction's row being committed
        in Postgres, polled in the same loop. Target (issue 3): p95 ≤ 1,000 ms (see notes).
    """,
)
def recommender_freshness_p95(ctx: Context) -> Result:
    samples = SAMPLES * ctx.repeat
    with scratch(ctx, "fresh") as stack, trained_worker(stack) as running:
        served, stored = _measure(stack, running, samples, ctx)
    return publish_to_serve(
        stack, served, stored, what="likes", served_as="served", target_p95_ms=TARGET_P95_MS
    )


def _measure(
    stack: Scratch, running: Worker, samples: int, ctx: Context
) -> tuple[list[float], list[float]]:
    """Milliseconds from publish to (served, stored), one like per sample."""
    rng = random.Random(3)
    users = [str(u) for u in rng.sample(range(1, 944), samples)]  # MovieLens user ids
    client = Client(running.port)
    served: list[float] = []
    stored: list[float] = []
    try:
        with Publisher(stack.settings) as publisher:
            for n, user in enumerate(users):
                # Desynchronise from the worker's batch timer, as real clicks are.
                time.sleep(rng.uniform(0.0, stack.settings.recommender_ingest_batch_seconds))
                top = client.recommended(user)[0]
                event = InteractionEvent.create(
                    {"user_id": user, "item_id": top, "action": "like"}, source=SOURCE
                )
                started = time.perf_counter()
                publisher.publish_sync(event)
                row, answer = _wait(stack, client, user, top, event.id)
                stored.append((row - started) * 1000)
                served.append((answer - started) * 1000)
                if n % 10 == 9:
                    ctx.progress(
                        f"{n + 1}/{samples} likes: served p50 {statistics.median(served):.0f} ms"
                    )
    finally:
        client.close()
    return served, stored


def _wait(stack: Scratch, client: Client, user: str, item: str, event_id: str):
    """When the row was first seen committed, and when the answer first lacked ``item``."""
    row = answer = None
    deadline = time.perf_counter() + TIMEOUT_SECONDS
    with stack.engine.connect() as conn:
        while row is None or answer is None:
            if (
                row is None
                and conn.execute(
                    text("SELECT 1 FROM interactions WHERE event_source = :s AND event_id = :i"),
                    {"s": SOURCE, "i": event_id},
                ).first()
            ):
                row = time.perf_counter()
            conn.rollback()  # a fresh snapshot for the next look
            if answer is None and item not in client.recommended(user):
                answer = time.perf_counter()
            if time.perf_counter() > deadline:
                raise BenchmarkError(
                    f"user {user}'s like of {item} did not show within {TIMEOUT_SECONDS:.0f} s"
                    f" (row stored: {row is not None}, answer changed: {answer is not None})"
                )
            time.sleep(POLL_SECONDS)
    return row, answer
