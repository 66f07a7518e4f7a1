"""The collector service: a chassis app (heartbeats, probes, /metrics) in front of Kafka.

It consumes no topic. In the background it reads the apps and their key hashes from
Postgres every MARQUEE_COLLECTOR_KEYS_REFRESH_SECONDS (requests never wait on the
database) and holds one SDK publisher, whose confirmations threads wait for.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from concurrent.futures import ThreadPoolExecutor

from shared.db import make_engine
from shared.kafka.publisher import Publisher
from shared.service import Service, create_app

from .cors import CorsPolicy
from .gateway import Gateway, Limits
from .http import install_views
from .keys import KeyRing
from .ratelimit import RateLimiter
from .settings import CollectorSettings
from .store import AppStore

log = logging.getLogger(__name__)


def build(settings: CollectorSettings) -> Service:
    service = create_app("collector", settings)
    app = service.app
    # One connection: the key refresh is the only reader.
    engine = make_engine(settings, pool_size=1, max_overflow=0)
    store = AppStore(engine)
    keys = KeyRing()
    pool = ThreadPoolExecutor(settings.collector_publish_threads, thread_name_prefix="collector")
    events = service.metrics.counter(
        "marquee_collector_events_total", "Events received over HTTP, by verdict", ("status",)
    )
    requests = service.metrics.counter(
        "marquee_collector_requests_total", "Event requests answered, by HTTP status", ("code",)
    )

    def counted(status: int, verdicts) -> None:
        for verdict in verdicts:
            events.labels(verdict.status).inc()
            key = f"events_{verdict.status}"
            service.counters[key] = service.counters.get(key, 0) + 1
        requests.labels(str(status)).inc()

    gateway = Gateway(
        keys=keys,
        cors=CorsPolicy(settings.cors_origins),
        limiter=RateLimiter(settings.collector_rate_per_second, settings.collector_rate_burst),
        codec=service.codec,
        limits=Limits(
            max_events=settings.collector_max_batch_events,
            max_bytes=settings.collector_max_request_bytes,
            confirm_timeout=settings.collector_confirm_timeout_seconds,
        ),
        executor=pool,
        on_verdicts=counted,
    )
    install_views(service, gateway)
    loaded_at: list[float] = []

    def keys_loaded() -> tuple[bool, str]:
        if not loaded_at:
            return False, "the apps have not been read from Postgres yet"
        age = time.monotonic() - loaded_at[-1]
        fresh = age < 3 * settings.collector_keys_refresh_seconds + 5
        return fresh, f"{len(keys)} active apps, read {age:.1f} s ago"

    service.health.add("apps", keys_loaded)

    def publisher_ready() -> tuple[bool, str]:
        if gateway.publish_many is None:
            return False, "connecting to Kafka"
        return True, "producer connected"

    service.health.add("publisher", publisher_ready)

    async def connect(loop: asyncio.AbstractEventLoop) -> Publisher:
        delay = 1.0
        while True:
            try:
                return await loop.run_in_executor(pool, Publisher, settings)
            except Exception as exc:  # noqa: BLE001 - readiness says so; retried
                log.warning("cannot connect the publisher yet (retry in %.0f s): %s", delay, exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, settings.retry_max_seconds)

    async def refresh(loop: asyncio.AbstractEventLoop) -> None:
        try:
            keys.replace(await loop.run_in_executor(pool, store.active))
            loaded_at[:] = [time.monotonic()]
        except Exception as exc:  # noqa: BLE001 - the last keys stay; readiness tells
            log.warning("could not read the apps from Postgres: %s", exc)

    @app.task
    async def run() -> None:
        loop = asyncio.get_running_loop()
        publisher: Publisher | None = None
        try:
            await refresh(loop)
            publisher = await connect(loop)
            gateway.publish_many = functools.partial(
                publisher.publish_many, timeout=settings.collector_confirm_timeout_seconds
            )
            while True:
                await asyncio.sleep(settings.collector_keys_refresh_seconds)
                await refresh(loop)
        finally:
            gateway.publish_many = None
            if publisher is not None:
                await loop.run_in_executor(pool, publisher.close, 5.0)
            pool.shutdown(wait=False)
            engine.dispose()

    return service
