"""The recommender's Faust app: ingest ``interactions`` into Postgres idempotently, keep the
active model fresh (fold-ins, reloads, scheduled retrains) and answer over HTTP and Kafka.

Wiring only: topics, agents, timers, views and health checks, over the
:class:`~.worker.RecommenderWorker` that decides what each batch, tick and request does.
``interactions`` are read by :class:`~.batch_ingest.BatchIngest` (aiokafka ``getmany``,
offsets committed after the write); the low-rate topics stay on Faust agents.

Agents' offsets: ``take_events`` acks a batch only when the loop asks for the next one, so
a batch is committed after its database write and its dead letters succeeded. Leaving the
loop would ack the batch it holds, so a failing batch is retried, never abandoned
(shared.retry); redoing a batch is harmless because every write is idempotent.
Concurrency stays 1 (faust-streaming #606).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from aiokafka import AIOKafkaConsumer

from shared.db import make_engine
from shared.errors import MarqueeError
from shared.experiments.store import ExperimentStore
from shared.service import Service, create_app
from shared.service.credentials import aiokafka_options
from shared.topics import full_name

from .batch_ingest import BatchIngest
from .catalog_store import PostgresCatalog
from .experiments import RunningExperiments
from .http import install_views
from .impressions import ImpressionLog
from .metrics import RecommenderMetrics
from .model_store import ModelStore
from .settings import RecommenderSettings
from .store import InteractionStore
from .worker import RecommenderWorker

log = logging.getLogger(__name__)


def content_encoder(settings: RecommenderSettings):
    """``(encode, model name, why not)``: the content encoder, or why there is none (the
    catalog is then served by name, and new items wait for readers)."""
    from .embedding.encoder import Encoder

    try:
        encoder = Encoder(settings.content_model_dir())
    except MarqueeError as exc:
        log.warning("no content encoder: %s", exc)
        return None, None, str(exc)
    return encoder.encode, encoder.name, None


async def take_batches(stream, settings: RecommenderSettings):
    """A Faust stream's records in batches (acked when the next batch is asked for)."""
    taken = stream.take_events(
        settings.recommender_ingest_batch_size,
        within=settings.recommender_ingest_batch_seconds,
    )
    async for events in taken:
        yield [event.message for event in events]


def install_batch_ingest(service: Service, worker: RecommenderWorker) -> None:
    """Read ``interactions`` with :class:`BatchIngest`, started and stopped with the app,
    its assignment on /readyz."""
    ingest = batch_ingest(service.settings, worker)
    service.app.service(ingest)
    service.health.add("ingest_assignment", ingest.assignment_check)


def batch_ingest(settings: RecommenderSettings, worker: RecommenderWorker) -> BatchIngest:
    """The interactions ingest: its own consumer, in its own group (see .batch_ingest)."""
    options = dict(
        aiokafka_options(settings),
        client_id=f"{settings.kafka_client_id}-recommender-ingest",
        group_id=f"{settings.topic_prefix}marquee-recommender-ingest",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        session_timeout_ms=int(settings.kafka_session_timeout_seconds * 1000),
        heartbeat_interval_ms=int(min(3.0, settings.kafka_session_timeout_seconds / 3) * 1000),
    )
    return BatchIngest(
        lambda: AIOKafkaConsumer(**options),
        topic=full_name("interactions", settings.topic_prefix),
        classify=worker.classify,
        store=worker.ingest,
        batch_size=settings.recommender_ingest_batch_size,
        wait_seconds=settings.recommender_ingest_batch_seconds,
        revoke_grace_seconds=settings.recommender_ingest_revoke_grace_seconds,
    )


def build(
    settings: RecommenderSettings,
    *,
    install_ingest: Callable[[Service, RecommenderWorker], None] = install_batch_ingest,
) -> Service:
    """The service. ``install_ingest`` sets up how ``interactions`` are read (the ingest
    benchmark's Faust-stream baseline installs an agent instead)."""
    service = create_app("recommender", settings)
    app = service.app
    engine = make_engine(settings)
    encode, content_model, no_encoder = content_encoder(settings)
    metrics = RecommenderMetrics.create(service.metrics)
    publish_impressions = service.publish if settings.recommender_publish_impressions else None
    worker = RecommenderWorker(
        settings,
        interactions=InteractionStore(engine),
        models=ModelStore(engine),
        catalog=PostgresCatalog(engine),
        encode=encode,
        content_model=content_model,
        publish=service.publish,
        dead_letter=service.dead_letter,
        metrics=metrics,
        impressions=ImpressionLog(publish_impressions, metrics.impressions),
        experiments=RunningExperiments(ExperimentStore(engine).all),
        codec=service.codec,
        counters=service.counters,  # reported in every heartbeat
    )
    app.service(worker)  # started and stopped with the app
    install_ingest(service, worker)

    service.require_assignment()
    service.require_postgres(engine)
    service.health.add("ingest", worker.ingest_check)
    service.health.add("model", worker.model_check)
    # Informative, not failing: without it the catalog still serves names and hides items.
    service.health.add("content", lambda: (True, no_encoder or f"encoder {content_model}"))
    install_views(service, worker)

    # Faust's timer decorator returns the endless loop; the worker's methods stay callable.
    app.timer(settings.recommender_model_poll_seconds, on_leader=False)(worker.reload)
    app.timer(settings.recommender_experiments_refresh_seconds, on_leader=False)(
        worker.refresh_experiments
    )
    app.timer(settings.recommender_fold_in_sync_seconds, on_leader=False)(worker.adopt_fold_ins)
    if settings.recommender_retrain_check_seconds:
        app.timer(settings.recommender_retrain_check_seconds, on_leader=False)(worker.check_retrain)

    raw = {"key_serializer": "raw", "value_serializer": "raw"}
    requests = app.topic(full_name("recommendation-requests", settings.topic_prefix), **raw)
    catalog = app.topic(full_name("catalog", settings.topic_prefix), **raw)

    @app.agent(catalog, concurrency=1)
    async def ingest_items(stream):
        async for batch in take_batches(stream, settings):
            await worker.ingest_items(batch)

    @app.agent(requests, concurrency=1)
    async def answer_requests(stream):
        async for event in stream.events():
            await worker.answer(event.message)

    return service
