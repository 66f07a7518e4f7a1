"""The feedback service: a chassis app that keeps impressions and the interactions that may
be attributed to them in Postgres, and answers CTR per version, strategy, surface, position.

A service of its own rather than a part of the recommender: it reads the same topics in its
own consumer group, so attribution never slows serving or the interactions ingest (which
is being reworked separately), and it scales and restarts on its own.
"""

from __future__ import annotations

import asyncio
import logging

from shared.db import make_engine
from shared.service import Service, create_app
from shared.topics import full_name

from .consumer import FeedbackConsumer
from .http import install_views
from .series import CtrSeries
from .settings import FeedbackSettings
from .store import FeedbackStore

log = logging.getLogger(__name__)


def build(settings: FeedbackSettings) -> Service:
    service = create_app("feedback", settings)
    app = service.app
    engine = make_engine(settings, pool_size=3, max_overflow=2)
    store = FeedbackStore(engine)
    consumer = FeedbackConsumer(
        store,
        service.codec,
        service.dead_letter,
        service.metrics.counter(
            "marquee_feedback_events_total",
            "Events read, by topic and outcome",
            ("topic", "outcome"),
        ),
        max_retry_seconds=settings.retry_max_seconds,
    )
    series = CtrSeries(service.metrics)

    service.require_assignment()
    service.require_postgres(engine)
    install_views(service, store, settings)

    raw = {"key_serializer": "raw", "value_serializer": "raw"}
    for base in ("impressions", "interactions"):
        topic = app.topic(full_name(base, settings.topic_prefix), **raw)
        app.agent(topic, name=f"feedback-{base}", concurrency=1)(_consume(consumer, base, settings))

    @app.timer(settings.feedback_metrics_refresh_seconds, on_leader=False)
    async def refresh_series() -> None:
        try:
            rates = await asyncio.to_thread(
                store.rates,
                settings.feedback_metrics_window_seconds,
                settings.feedback_attribution_window_seconds,
                settings.feedback_clock_skew_seconds,
            )
        except Exception as exc:  # noqa: BLE001 - the series stay as they were; retried next tick
            log.warning("could not recompute the CTR series: %s", exc)
            return
        series.show(rates.by_group, rates.by_position, rates.organic_clicks)

    return service


def _consume(consumer: FeedbackConsumer, base: str, settings: FeedbackSettings):
    async def agent(stream):
        taken = stream.take_events(
            settings.feedback_batch_size, within=settings.feedback_batch_seconds
        )
        async for events in taken:
            await consumer.consume([event.message for event in events], base)

    agent.__name__ = agent.__qualname__ = f"consume_{base}"
    return agent
