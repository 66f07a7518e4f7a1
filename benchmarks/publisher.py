"""What the publisher SDK costs over a bare kafka-python producer, per ~1 KB event.

The SDK's ``publish`` checks the event against the topic registry, encodes it (clock-skew
and size checks, JSON dump), keys it and registers delivery callbacks. The bare producer
gets the very same records already encoded, so the ratio is exactly that per-event work.
"""

from __future__ import annotations

import statistics
import time
import uuid
from collections.abc import Callable

from kafka import KafkaProducer
from kafka.admin import KafkaAdminClient
from kafka.errors import KafkaError

from shared.config import Settings
from shared.events import ContentRequestEvent, Envelope
from shared.kafka.admin import ensure_topics
from shared.kafka.client import client_options
from shared.kafka.publisher import PRODUCER_DEFAULTS, Publisher
from shared.topics import TOPICS

from .harness import BenchmarkError, Context, Result, benchmark

TOPIC = "content-requests"
EVENT_BYTES = 1024
#: Records each fresh producer sends untimed first, so metadata and connections are warm.
WARMUP = 1_000

_PROMPT = (
    "Write a 600-word news article for a general audience about the city council's vote "
    "on the new tram line. Cover the budget, the timeline, the route through the old town "
    "and what residents and shop owners said at the hearing. Keep a neutral tone, quote "
    "both sides fairly, and end with the next steps and the dates of the public meetings. "
)

Record = tuple[str, bytes, bytes, list[tuple[str, bytes]]]


@benchmark(
    "publisher_throughput",
    unit="events/s",
    target_ratio=0.8,
    description="""
        Events per second through `Publisher.publish` (registry check, clock-skew and
        size checks, JSON encoding, keying, delivery callbacks) plus the final flush, for
        ~1 KB `marquee.content_request.v1` events (an editor's ~600-character prompt;
        interactions are only ~250-350 bytes, so they cannot honestly be 1 KB). Baseline:
        a bare kafka-python `KafkaProducer` with the SDK's `PRODUCER_DEFAULTS` sending the
        same records pre-encoded (same topic, key, value and headers). acks=all,
        idempotent, single local broker; median of interleaved repetitions. Target: the
        SDK keeps at least 80% of the bare producer's throughput.
    """,
)
def publisher_throughput(ctx: Context) -> Result:
    prefix = f"bench-{uuid.uuid4().hex[:8]}."
    settings = ctx.settings.model_copy(update={"topic_prefix": prefix})
    admin = KafkaAdminClient(**client_options(settings))
    try:
        ensure_topics(
            admin,
            prefix=prefix,
            replication=settings.topic_replication,
            partitions=settings.topic_partitions,
            specs={TOPIC: TOPICS[TOPIC]},
        )
        ctx.progress(f"preparing {ctx.events:,} events on {prefix}{TOPIC}")
        events = _events(ctx.events + WARMUP)
        with Publisher(settings) as encoder:
            records = [_record(encoder, event) for event in events]
        size = statistics.mean(len(value) for _, _, value, _ in records)

        sides: dict[str, Callable[[], float]] = {
            "bare": lambda: _bare(settings, records),
            "sdk": lambda: sdk_rate(settings, events),
        }
        rates: dict[str, list[float]] = {side: [] for side in sides}
        for rep in range(ctx.repeat):
            # Alternate who goes first, so a drift in the broker's speed hits both alike.
            order = list(sides) if rep % 2 == 0 else list(reversed(sides))
            for side in order:
                rates[side].append(sides[side]())
                ctx.progress(
                    f"rep {rep + 1}/{ctx.repeat} {side:>4}: {rates[side][-1]:,.0f} events/s"
                )
    finally:
        _delete_topics(admin, [f"{prefix}{TOPIC}"], ctx.progress)
        admin.close()
    return Result(
        value=statistics.median(rates["sdk"]),
        baseline_name="bare producer",
        baseline_value=statistics.median(rates["bare"]),
        notes=(
            f"payload {size:,.0f} bytes/event, {ctx.events:,} events per side and repetition",
            *(f"{side}: {', '.join(f'{r:,.0f}' for r in rates[side])} events/s" for side in rates),
        ),
    )


def _events(count: int) -> list[ContentRequestEvent]:
    run = uuid.uuid4().hex[:8]

    def make(i: int, prompt: str) -> ContentRequestEvent:
        return ContentRequestEvent.create(
            {
                "request_id": f"req-{run}-{i:08d}",
                "kind": "news",
                "prompt": prompt,
                "user_id": f"editor-{i % 500:04d}",
            },
            source="urn:marquee:newsroom-editor",
        )

    # Fill the prompt so the encoded envelope is ~EVENT_BYTES; ids have a fixed width.
    overhead = len(make(0, "x").model_dump_json(exclude_none=True)) - 1
    prompt = (_PROMPT * (EVENT_BYTES // len(_PROMPT) + 1))[: EVENT_BYTES - overhead]
    return [make(i, prompt) for i in range(count)]


def _record(encoder: Publisher, event: ContentRequestEvent) -> Record:
    r = encoder.encode(event)
    return r.topic, r.key, r.value, r.headers


def _timed(send: Callable[[list], None], items: list) -> float:
    """Events/s for ``items[WARMUP:]``, after an untimed warm-up with ``items[:WARMUP]``."""
    send(items[:WARMUP])
    start = time.perf_counter()
    send(items[WARMUP:])
    return (len(items) - WARMUP) / (time.perf_counter() - start)


def _bare(settings: Settings, records: list[Record]) -> float:
    producer = KafkaProducer(**client_options(settings), **PRODUCER_DEFAULTS)
    futures = []

    def send(batch: list[Record]) -> None:
        for topic, key, value, headers in batch:
            futures.append(producer.send(topic, key=key, value=value, headers=headers))
        producer.flush()

    try:
        rate = _timed(send, records)
    finally:
        producer.close()
    failed = [f.exception for f in futures if f.failed()]
    if failed:
        raise BenchmarkError(f"bare producer: {len(failed)} record(s) not confirmed: {failed[0]}")
    return rate


def sdk_rate(settings: Settings, events: list[Envelope]) -> float:
    """Events/s through `Publisher.publish` and its flush (the SDK as apps use it)."""
    # The SDK's flush raises DeliveryError when any event was not confirmed.
    with Publisher(settings) as publisher:

        def send(batch: list[Envelope]) -> None:
            for event in batch:
                publisher.publish(event)
            publisher.flush()

        return _timed(send, events)


def _delete_topics(admin: KafkaAdminClient, names: list[str], progress) -> None:
    try:
        admin.delete_topics(names)
    except KafkaError as exc:
        # Leftover bench topics are harmless but clutter the broker: say which, and go on.
        progress(f"warning: could not delete {', '.join(names)} ({exc}); delete them by hand")
