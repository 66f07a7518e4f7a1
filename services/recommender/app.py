"""The recommender's Faust app: ingest ``interactions`` into Postgres idempotently, keep the
active model fresh (fold-ins, reloads, scheduled retrains) and answer over HTTP and Kafka.

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
from shared.events.models import RecommendationsEvent
from shared.retry import retry_until_done
from shared.service import Service, create_app
from shared.topics import full_name

from . import freshness
from .confidence import Weights
from .http import install_views
from .model_store import ModelStore, TrainingBusy
from .schedule import retrain_reason
from .serving import Loaded, load_active, recommend_async
from .settings import RecommenderSettings
from .store import InteractionRow, InteractionStore
from .training import retrain

log = logging.getLogger(__name__)

#: ``marquee serve recommender`` loads this settings class.
SETTINGS = RecommenderSettings


def build(settings: RecommenderSettings) -> Service:
    service = create_app("recommender", settings)
    app = service.app
    weights = Weights.from_settings(settings)
    engine = make_engine(settings)
    store: InteractionStore | None = None
    totals = service.counters  # reported in every heartbeat
    totals.update({"interactions_stored": 0, "dead_letters": 0})
    last_failure: list[str] = []

    raw = {"key_serializer": "raw", "value_serializer": "raw"}
    interactions = app.topic(full_name("interactions", settings.topic_prefix), **raw)
    requests = app.topic(full_name("recommendation-requests", settings.topic_prefix), **raw)

    m = service.metrics
    consumed = m.counter("marquee_events_consumed_total", "Events read from Kafka", ("topic",))
    stored = m.counter("marquee_interactions_stored_total", "New interactions written to Postgres")
    duplicates = m.counter("marquee_interactions_duplicate_total", "Redelivered events skipped")
    write_seconds = m.histogram("marquee_batch_write_seconds", "Postgres write time per batch")
    failures = m.counter(
        "marquee_batch_failures_total", "Batch attempts that failed and were retried"
    )
    fold_in_seconds = m.histogram("marquee_fold_in_seconds", "Fold-in time per batch")
    folded = m.counter("marquee_fold_ins_total", "Users and items folded into the model", ("side",))
    adopted = m.counter("marquee_fold_ins_adopted_total", "Fold-ins adopted from other workers")
    retrains = m.counter("marquee_retrains_total", "Scheduled retrains by outcome", ("outcome",))
    retrain_seconds = m.histogram(
        "marquee_retrain_seconds", "Scheduled retrain time", buckets=(1, 5, 15, 60, 300, 1800)
    )
    model_version = m.gauge("marquee_model_version", "Active model version served (0: none)")
    quality = {
        name: m.gauge(
            f"marquee_model_{name}_at_10", f"Held-out {name}@10 of the served model", ("model",)
        )
        for name in ("precision", "ndcg")
    }

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

    service.require_assignment()
    service.health.add("postgres", postgres_check)
    service.health.add("ingest", ingest_check)
    service.health.add("model", model_check)
    install_views(service, serving, model_store)

    def show_quality(loaded: Loaded) -> None:
        model_version.set(loaded.version.id)
        holdout = loaded.version.metrics.get("holdout", {})
        for model, scores in holdout.items():
            for name, gauge in quality.items():
                if f"{name}@10" in scores:
                    gauge.labels(model).set(scores[f"{name}@10"])

    reloading = asyncio.Lock()  # the poll timer and a finished retrain may both reload

    async def reload_model() -> None:
        async with reloading:
            await _reload_model()

    async def _reload_model() -> None:
        # Another worker (or `marquee train`) may have activated a new version.
        try:
            active = await asyncio.to_thread(model_store.active)
            current = serving["loaded"]
            if active is not None and (current is None or current.version.id != active.id):
                loaded = await asyncio.to_thread(
                    load_active, model_store, settings.popularity_half_life_days * 86_400
                )
                if loaded is not None:
                    done = await freshness.catch_up(engine, loaded)
                    serving["loaded"] = loaded
                    # Batches stored while it caught up were not folded in (no version was
                    # served yet): fold them in now that new batches fold into this one.
                    await freshness.catch_up(engine, loaded)
                    show_quality(loaded)
                    log.info(
                        "serving version %s; caught up %s users", loaded.version.id, len(done.users)
                    )
        except Exception as exc:  # noqa: BLE001 - /readyz reports a missing model
            log.warning("loading the active model failed: %s", exc)

    # Faust's timer decorator returns the endless loop, not the function: keep ours callable.
    app.timer(settings.model_poll_seconds, on_leader=False)(reload_model)

    @app.timer(settings.fold_in_sync_seconds, on_leader=False)
    async def adopt_fold_ins() -> None:
        loaded = serving["loaded"]
        if loaded is None:
            return
        try:
            adopted.inc(await freshness.sync(engine, loaded))
        except Exception as exc:  # noqa: BLE001 - retried on the next tick
            log.warning("reading other workers' fold-ins failed: %s", exc)

    if settings.retrain_check_seconds:
        policy = settings.retrain_policy()

        def due() -> str | None:
            interactions, trained_on, age = model_store.training_state()
            return retrain_reason(
                policy, interactions=interactions, last_trained_on=trained_on, last_age_seconds=age
            )

        training: list[asyncio.Task] = []

        @app.timer(settings.retrain_check_seconds, on_leader=False)
        async def check_retrain() -> None:
            # Training takes minutes; the timer only starts it, so its ticks stay short.
            if not training or training[0].done():
                training[:] = [asyncio.ensure_future(scheduled_retrain())]

        async def scheduled_retrain() -> None:
            try:
                reason = await asyncio.to_thread(due)
                if reason is None:
                    return
                log.info("retraining: %s", reason)
                started = time.perf_counter()
                outcome = await asyncio.to_thread(
                    retrain,
                    model_store,
                    settings.als_params(),
                    gate_ratio=settings.quality_gate_ratio,
                    keep=settings.keep_versions,
                    due=due,
                )
            except TrainingBusy:
                return  # another worker is on it
            except Exception as exc:  # noqa: BLE001 - the next check tries again
                retrains.labels("failed").inc()
                log.warning("scheduled retrain failed: %s", exc)
                return
            retrains.labels(outcome.status).inc()
            if outcome.status != "skipped":
                retrain_seconds.observe(time.perf_counter() - started)
                log.info("retrain done: version %s %s", outcome.version, outcome.status)
                await reload_model()

    async def fold_in(rows: list[InteractionRow]) -> None:
        """Refresh the batch's users from their full history, so a click counts at once."""
        loaded = serving["loaded"]
        if loaded is None or not rows:
            return
        started = time.perf_counter()
        done = await freshness.fold_in(
            engine, loaded, {r.user_id for r in rows}, {r.item_id for r in rows}
        )
        folded.labels("user").inc(len(done.users))
        folded.labels("item").inc(len(done.items))
        fold_in_seconds.observe(time.perf_counter() - started)

    def classify(events) -> tuple[list[InteractionRow], list]:
        """Valid interactions become rows; anything else becomes a dead letter."""
        rows, letters = [], []
        for event in events:
            msg = event.message
            try:
                parsed = service.decode(msg, "interactions")
            except InvalidEvent as exc:
                letters.append((msg, exc))
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
        for msg, exc in letters:
            # Confirmed before the batch is acked: a dead letter is never lost either.
            await service.dead_letter(msg, "interactions", exc)
        if store is None:
            store = await asyncio.to_thread(InteractionStore, engine)
        started = time.perf_counter()
        new = await asyncio.to_thread(store.write, rows)
        write_seconds.observe(time.perf_counter() - started)
        consumed.labels("interactions").inc(len(events))
        stored.inc(new)
        duplicates.inc(len(rows) - new)
        totals["interactions_stored"] += new
        totals["dead_letters"] += len(letters)
        if new:
            await fold_in(rows)

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

    async def reply_to(event) -> None:
        """One reply on ``recommendations`` per valid request, correlated by request_id."""
        msg = event.message
        try:
            parsed = service.decode(msg, "recommendation-requests")
        except InvalidEvent as exc:
            await service.dead_letter(msg, "recommendation-requests", exc)
            return
        request = parsed.data
        reply = {"request_id": request.request_id, "user_id": request.user_id, "items": []}
        current = serving["loaded"]
        if current is None:
            reply.update(strategy="popularity", error="no active model yet")
        else:
            items, strategy = await recommend_async(
                current,
                engine,
                request.user_id,
                request.k,
                request.exclude_seen,
                request.kind,
            )
            reply.update(
                items=[{"item_id": i, "score": score} for i, score in items],
                strategy=strategy,
                model_version=current.version.id,
            )
        await service.publish(RecommendationsEvent.create(reply, source="urn:marquee:recommender"))

    @app.agent(requests, concurrency=1)
    async def answer_requests(stream):
        async for event in stream.events():
            consumed.labels("recommendation-requests").inc()
            await retry_until_done(
                lambda event=event: reply_to(event),
                what="recommendation request",
                max_delay=settings.retry_max_seconds,
            )

    return service
