"""The dashboard service: a chassis app (heartbeats, probes, /metrics) that samples Kafka and
Postgres in the background and serves a live web page plus a JSON API.

Sampling runs on two single-thread executors (kafka-python and psycopg2 block), one tick
after another; the event loop only serves requests from the snapshot each tick leaves.
The app consumes no topic: its Faust consumer group stays empty.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from shared.db import make_engine
from shared.service import Service, create_app

from .access import Access
from .collector import Collector, SourceState
from .errors import FeedbackUnavailable
from .exporter import LagExporter
from .feedback_client import FeedbackClient
from .http import install_views, load_assets
from .kafka_source import KafkaSource
from .postgres_source import PostgresSource
from .recommender_client import RecommenderClient
from .settings import DashboardSettings

log = logging.getLogger(__name__)


def build(settings: DashboardSettings) -> Service:
    service = create_app("dashboard", settings)
    # kafka-python warns on every describe of a Faust group (it cannot parse Faust's member
    # metadata); kafka_source decodes the assignment itself, so the warning is noise.
    logging.getLogger("kafka.admin._groups").setLevel(logging.ERROR)
    app = service.app
    # Two connections at most: one for the sampler, one for an explorer request.
    engine = make_engine(settings, pool_size=1, max_overflow=1)
    postgres = PostgresSource(engine)
    exporter = LagExporter(service.metrics)
    collector = Collector(
        settings,
        kafka=lambda: KafkaSource(settings),
        postgres=postgres,
        on_sample=exporter.update,
    )
    access = Access(settings.http_token, token_for_local=settings.dashboard_token_for_local)
    recommender = RecommenderClient(settings.recommender_url(), settings.recommender_token())
    feedback = FeedbackClient(settings.feedback_url(), settings.http_token)  # one per stack
    install_views(
        service,
        collector,
        postgres,
        recommender,
        access,
        load_assets(settings.dashboard_node_modules),
    )
    _warn_if_open(settings)

    def sampled(state: SourceState, interval: float) -> Callable[[], tuple[bool, str]]:
        # Three intervals' grace: one slow sample is not an outage.
        return lambda: collector.healthy(state, within=3 * interval + 5)

    service.health.add(
        "kafka_sampling", sampled(collector.kafka_state, settings.dashboard_sample_seconds)
    )
    service.health.add(
        "postgres_sampling", sampled(collector.postgres_state, settings.dashboard_postgres_seconds)
    )

    kafka_thread = ThreadPoolExecutor(1, thread_name_prefix="dashboard-kafka")
    postgres_thread = ThreadPoolExecutor(1, thread_name_prefix="dashboard-postgres")

    async def every(interval: float, pool: ThreadPoolExecutor, tick: Callable[[], None]) -> None:
        loop = asyncio.get_running_loop()
        while True:
            started = time.monotonic()
            await loop.run_in_executor(pool, tick)
            service.counters.update(
                {
                    "groups": len(collector.groups),
                    "partitions_tracked": len(collector.lags),
                    "kafka_samples": collector.kafka_state.samples,
                    "postgres_samples": collector.postgres_state.samples,
                }
            )
            await asyncio.sleep(max(0.0, interval - (time.monotonic() - started)))

    @app.task
    async def sample_kafka() -> None:
        try:
            await every(settings.dashboard_sample_seconds, kafka_thread, collector.sample_kafka)
        finally:
            await asyncio.get_running_loop().run_in_executor(kafka_thread, collector.close)
            kafka_thread.shutdown(wait=False)

    @app.task
    async def sample_postgres() -> None:
        try:
            await every(
                settings.dashboard_postgres_seconds, postgres_thread, collector.sample_postgres
            )
        finally:
            await recommender.close()
            postgres_thread.shutdown(wait=False)
            engine.dispose()

    @app.task
    async def sample_feedback() -> None:
        # An HTTP call on the event loop (aiohttp): no thread needed, unlike the samplers.
        interval = settings.dashboard_feedback_seconds
        try:
            while True:
                started = time.monotonic()
                try:
                    answer = await feedback.ctr(settings.dashboard_feedback_window_seconds)
                except FeedbackUnavailable as exc:
                    answer = exc
                collector.sample_feedback(answer)
                await asyncio.sleep(max(0.0, interval - (time.monotonic() - started)))
        finally:
            await feedback.close()

    return service


def _warn_if_open(settings: DashboardSettings) -> None:
    try:
        loopback = ipaddress.ip_address(settings.http_host).is_loopback
    except ValueError:
        loopback = settings.http_host == "localhost"
    if not loopback and settings.http_token is None:
        log.warning(
            "the dashboard listens on %s without MARQUEE_HTTP_TOKEN: anyone who can reach "
            "port %s can read it (consumer groups, user histories)",
            settings.http_host,
            settings.http_port,
        )
