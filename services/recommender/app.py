"""The recommender's Faust app: ingest ``interactions`` into Postgres, idempotently.

Offsets: ``take_events`` acks a batch only when the loop asks for the next one, so a
batch is committed after its database write and its dead letters succeeded. Leaving the
loop would ack the batch it holds, so a failing batch is retried, never abandoned
(shared.retry); redoing a batch is harmless because every write is idempotent.
Concurrency stays 1 (faust-streaming #606).
"""

from __future__ import annotations

import asyncio
import logging
import time

from sqlalchemy import text

from shared.db import make_engine
from shared.errors import InvalidEvent
from shared.events import EventCodec
from shared.events.deadletter import dead_letter
from shared.retry import retry_until_done
from shared.service import Service, create_app
from shared.topics import full_name

from .confidence import Weights
from .http import install_views
from .model_store import ModelStore, histories
from .serving import Loaded, load_active
from .settings import RecommenderSettings
from .store import InteractionRow, InteractionStore

log = logging.getLogger(__name__)

#: ``marquee serve recommender`` loads this settings class.
SETTINGS = RecommenderSettings

#: Dead letters carry the original bytes, oversized ones included, so they get their own
#: limit (base64 of at most 256 KiB, plus the envelope) instead of MARQUEE_MAX_EVENT_BYTES.
DLQ_CODEC = EventCodec(max_bytes=512 * 1024)


def build(settings: RecommenderSettings) -> Service:
    service = create_app("recommender", settings)
    app = service.app
    codec = EventCodec(
        max_bytes=settings.max_event_bytes, max_clock_skew_seconds=settings.max_clock_skew_seconds
    )
    weights = Weights.from_settings(settings)
    engine = make_engine(settings)
    store: InteractionStore | None = None
    totals = service.counters  # reported in every heartbeat
    totals.update({"interactions_stored": 0, "dead_letters": 0})
    last_failure: list[str] = []

    raw = {"key_serializer": "raw", "value_serializer": "raw"}
    interactions = app.topic(full_name("interactions", settings.topic_prefix), **raw)

    m = service.metrics
    consumed = m.counter("marquee_events_consumed_total", "Events read from Kafka", ("topic",))
    stored = m.counter("marquee_interactions_stored_total", "New interactions written to Postgres")
    duplicates = m.counter("marquee_interactions_duplicate_total", "Redelivered events skipped")
    dead = m.counter("marquee_dead_letters_total", "Events sent to a DLQ", ("topic",))
    write_seconds = m.histogram("marquee_batch_write_seconds", "Postgres write time per batch")
    failures = m.counter(
        "marquee_batch_failures_total", "Batch attempts that failed and were retried"
    )
    fold_in_seconds = m.histogram("marquee_fold_in_seconds", "Fold-in time per batch")

    def postgres_check() -> tuple[bool, str]:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        return True, "reachable"

    def ingest_check() -> tuple[bool, str]:
        return (False, f"retrying a batch: {last_failure[0]}") if last_failure else (True, "ok")

    model_store = ModelStore(engine)
    serving: dict[str, Loaded | None] = {"loaded": None}

    def model_check() -> tuple[bool, str]:
        loaded = serving["loaded"]
        if loaded is None:
            return False, "no active model loaded (run `marquee train`)"
        return True, f"model version {loaded.version.id}"

    service.health.add("postgres", postgres_check)
    service.health.add("ingest", ingest_check)
    service.health.add("model", model_check)
    install_views(service, serving, model_store)

    @app.timer(settings.model_poll_seconds, on_leader=False)
    async def reload_model() -> None:
        # Another worker (or `marquee train`) may have activated a new version.
        try:
            active = await asyncio.to_thread(model_store.active)
            current = serving["loaded"]
            if active is not None and (current is None or current.version.id != active.id):
                serving["loaded"] = await asyncio.to_thread(
                    load_active, model_store, settings.popularity_half_life_days * 86_400
                )
        except Exception as exc:  # noqa: BLE001 - /readyz reports a missing model
            log.warning("loading the active model failed: %s", exc)

    async def fold_in(user_ids: set[str]) -> None:
        """Refresh changed users from their full history, so a click counts at once."""
        loaded = serving["loaded"]
        if loaded is None or not user_ids:
            return
        started = time.perf_counter()
        found = await asyncio.to_thread(histories, engine, sorted(user_ids))
        for n, (user, history) in enumerate(found.items()):
            loaded.recommender.fold_in(user, history)
            if n % 50 == 49:
                await asyncio.sleep(0)  # let HTTP requests in between users
        fold_in_seconds.observe(time.perf_counter() - started)

    def classify(events) -> tuple[list[InteractionRow], list]:
        """Valid interactions become rows; anything else becomes a dead letter."""
        rows, letters = [], []
        for event in events:
            msg = event.message
            try:
                parsed = codec.decode(msg.value)
                if parsed.type != "marquee.interaction.v1":
                    raise InvalidEvent(f"{parsed.type} does not belong on the interactions topic")
            except InvalidEvent as exc:
                letters.append(
                    dead_letter(
                        service="recommender",
                        topic=msg.topic,
                        partition=msg.partition,
                        offset=msg.offset,
                        key=msg.key,
                        value=msg.value,
                        error=exc,
                    )
                )
                continue
            data = parsed.data
            rows.append(
                InteractionRow(
                    event_source=parsed.source,
                    event_id=parsed.id,
                    user_id=data.user_id,
                    item_id=data.item_id,
                    action=data.action,
                    weight=weights.of(data),
                    dwell_seconds=data.dwell_seconds,
                    rating=data.rating,
                    occurred_at=parsed.time,
                    kafka_topic=msg.topic,
                    kafka_partition=msg.partition,
                    kafka_offset=msg.offset,
                )
            )
        return rows, letters

    async def process(events) -> None:
        nonlocal store
        rows, letters = classify(events)
        for letter in letters:
            # Confirmed before the batch is acked: a dead letter is never lost either.
            await service.publish(letter, topic="interactions.dlq", codec=DLQ_CODEC)
            log.info("dead letter %s: %s", letter.id, letter.data.error)
        if store is None:
            store = await asyncio.to_thread(InteractionStore, engine)
        started = time.perf_counter()
        new = await asyncio.to_thread(store.write, rows)
        write_seconds.observe(time.perf_counter() - started)
        consumed.labels("interactions").inc(len(events))
        dead.labels("interactions").inc(len(letters))
        stored.inc(new)
        duplicates.inc(len(rows) - new)
        totals["interactions_stored"] += new
        totals["dead_letters"] += len(letters)
        if new:
            await fold_in({row.user_id for row in rows})

    def failed(exc: BaseException) -> None:
        failures.inc()
        last_failure[:] = [f"{type(exc).__name__}: {exc}"]

    @app.agent(interactions, concurrency=1)
    async def ingest(stream):
        batches = stream.take_events(
            settings.ingest_batch_size, within=settings.ingest_batch_seconds
        )
        async for events in batches:
            await retry_until_done(
                lambda events=events: process(events),
                what=f"interactions batch of {len(events)}",
                max_delay=settings.retry_max_seconds,
                on_failure=failed,
            )
            last_failure.clear()

    return service
