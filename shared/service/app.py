"""Faust app factory with the house conventions built in."""

from __future__ import annotations

import asyncio
import hmac
import logging
import os
import socket
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import faust
from faust.web import Request, Response, View

from .. import __version__
from ..config import Settings
from ..events import EventCodec, HeartbeatEvent
from ..events.deadletter import dead_letter_for
from ..events.envelope import Envelope
from ..health import Health
from ..kafka.records import to_record
from ..metrics import CONTENT_TYPE, Metrics
from .credentials import broker_credentials

log = logging.getLogger(__name__)

#: Probes answer without the token: orchestrators call them and they reveal nothing.
PUBLIC_PATHS = frozenset({"/livez", "/readyz"})
#: Dead letters carry the original bytes, oversized ones included, so they get their own
#: limit (base64 of at most 256 KiB, plus the envelope) instead of MARQUEE_MAX_EVENT_BYTES.
DLQ_CODEC = EventCodec(max_bytes=512 * 1024)


@dataclass
class Service:
    """What a service's agents and views share: its app, settings, health and metrics."""

    name: str
    settings: Settings
    app: faust.App
    health: Health
    metrics: Metrics
    instance: str
    started_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    last_heartbeat_at: float | None = None
    #: Extra numbers a service adds to its heartbeat (events consumed, queue depth, ...).
    counters: dict[str, float] = field(default_factory=dict)
    codec: EventCodec = field(default_factory=EventCodec)
    _topics: dict[str, faust.TopicT] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.dead_letters = self.metrics.counter(
            "marquee_dead_letters_total", "Events sent to a DLQ", ("topic",)
        )
        self.request_seconds = self.metrics.histogram(
            "marquee_http_request_duration_seconds",
            "Time to answer an API request, by route",
            ("route",),
            # Milliseconds matter here: the default buckets start at 5 ms.
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0),
        )

    async def publish(
        self, event: Envelope, *, topic: str | None = None, codec: EventCodec | None = None
    ) -> None:
        """Send ``event`` by the registry's rules and wait until the broker confirms it."""
        record = to_record(
            event, codec or self.codec, prefix=self.settings.topic_prefix, topic=topic
        )
        channel = self._topics.get(record.topic)
        if channel is None:
            channel = self._topics[record.topic] = self.app.topic(
                record.topic, key_serializer="raw", value_serializer="raw"
            )
        delivery = await channel.send(key=record.key, value=record.value, headers=record.headers)
        await asyncio.wait_for(delivery, 30)  # confirmed by the broker, not just queued

    def decode(self, message, topic: str) -> Envelope:
        """The event in a consumed record of ``topic`` (a registry name); raises
        :class:`InvalidEvent` for anything that does not belong there."""
        return self.codec.decode(message.value, topic=topic)

    async def dead_letter(self, message, topic: str, error: BaseException | str) -> None:
        """Send a consumed record of ``topic`` to ``<topic>.dlq`` with the reason, and wait
        until the broker confirms it (so the record may then be acked)."""
        letter = dead_letter_for(self.name, message, error)
        await self.publish(letter, topic=f"{topic}.dlq", codec=DLQ_CODEC)
        self.dead_letters.labels(topic).inc()
        log.info("dead letter %s from %s: %s", letter.id, topic, letter.data.error)

    def require_assignment(self) -> None:
        """Add a readiness check: this worker has joined its consumer group and is not in
        the middle of a rebalance (for services that consume; it may hold no partitions)."""
        app = self.app

        def assigned() -> tuple[bool, str]:
            if not app.rebalancing_count:
                return False, "not in the consumer group yet"
            if app.rebalancing:
                return False, "rebalancing"
            return True, f"{len(app.consumer.assignment())} partitions assigned"

        self.health.add("kafka_assignment", assigned)

    def require_postgres(self, engine) -> None:  # noqa: ANN001 - a SQLAlchemy Engine
        """Add a readiness check: ``engine``'s database answers a query."""

        def reachable() -> tuple[bool, str]:
            with engine.connect() as conn:
                conn.exec_driver_sql("SELECT 1")
            return True, "reachable"

        self.health.add("postgres", reachable)

    def has_token(self, request: Request) -> bool:
        """True when no token is configured or the request carries it."""
        token = self.settings.http_token
        if token is None:
            return True
        given = request.headers.get("Authorization", "")
        return hmac.compare_digest(given.encode(), f"Bearer {token.get_secret_value()}".encode())

    def authorized(self, request: Request) -> bool:
        return request.path in PUBLIC_PATHS or self.has_token(request)

    def route(self, path: str):
        """Register a view class at ``path`` behind the token check."""
        service = self

        def decorate(view_cls: type[View]) -> type[View]:
            original = view_cls.dispatch
            # Labelled by the route's template, never the concrete path: bounded cardinality.
            latency = service.request_seconds.labels(path)

            async def dispatch(self, request: Request) -> Response:  # noqa: ANN001
                if not service.authorized(request):
                    return self.json(
                        {"error": "unauthorized: send Authorization: Bearer <MARQUEE_HTTP_TOKEN>"},
                        status=401,
                    )
                with latency.time():
                    return await original(self, request)

            view_cls.dispatch = dispatch  # type: ignore[method-assign]
            return self.app.page(path)(view_cls)

        return decorate


def create_app(
    name: str,
    settings: Settings,
    *,
    heartbeat_seconds: float = 10.0,
    instance: str | None = None,
    stream_buffer: int | None = None,
) -> Service:
    """A Faust app in consumer group ``<topic prefix>marquee-<name>`` with health, metrics
    and heartbeats. The prefix namespaces groups as it does topics, so environments that
    share a cluster never join each other's groups. ``stream_buffer``: how many fetched
    records an agent's stream may hold before Faust stops fetching its partitions (Faust's
    ``stream_buffer_maxsize``, 4096 by default; smaller for costly records)."""
    app_id = f"{settings.topic_prefix}marquee-{name}"
    # Faust makes "<id>-data/" in the working directory even for memory tables; keep the
    # checkout (or a container's work dir) clean. Per user, private: /tmp is shared.
    user = getattr(os, "getuid", lambda: "user")()
    datadir = Path(tempfile.gettempdir()) / f"marquee-faust-{user}" / f"{app_id}-data"
    datadir.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    app = faust.App(
        app_id,
        # Faust runs str.format on it (with the app's settings as ``conf``).
        datadir=str(datadir).replace("{", "{{").replace("}", "}}"),
        broker=[f"kafka://{s.strip()}" for s in settings.kafka_bootstrap_servers.split(",")],
        broker_credentials=broker_credentials(settings),
        broker_client_id=f"{settings.kafka_client_id}-{name}",
        store="memory://",
        autodiscover=False,
        web_bind=settings.http_host,
        web_host=settings.http_host,
        web_port=settings.http_port,
        # Faust's own introspection pages would bypass the token; ours are the API.
        web_stats_enabled=False,
        web_tables_enabled=False,
        web_router_enabled=False,
        web_graph_enabled=False,
        topic_replication_factor=settings.topic_replication,
        consumer_auto_offset_reset="earliest",
        broker_session_timeout=settings.kafka_session_timeout_seconds,
        broker_heartbeat_interval=min(3.0, settings.kafka_session_timeout_seconds / 3),
        **({"stream_buffer_maxsize": stream_buffer} if stream_buffer else {}),
    )
    service = Service(
        name=name,
        settings=settings,
        app=app,
        health=Health(name),
        metrics=Metrics(service=name),
        instance=instance or f"{name}-{socket.gethostname()}-{os.getpid()}",
        codec=EventCodec(
            max_bytes=settings.max_event_bytes,
            max_clock_skew_seconds=settings.max_clock_skew_seconds,
        ),
    )
    _install_probes(service)
    _install_heartbeat(service, heartbeat_seconds)
    return service


def _install_probes(service: Service) -> None:
    @service.route("/livez")
    class Livez(View):
        async def get(self, request: Request) -> Response:
            status, body = service.health.live()
            return self.json(body, status=status)

    @service.route("/readyz")
    class Readyz(View):
        async def get(self, request: Request) -> Response:
            status, body = await service.health.ready(verbose=service.has_token(request))
            return self.json(body, status=status)

    @service.route("/metrics")
    class MetricsView(View):
        async def get(self, request: Request) -> Response:
            # aiohttp refuses a charset inside content_type=; a header carries it whole.
            return self.bytes(service.metrics.render(), headers={"Content-Type": CONTENT_TYPE})


def _install_heartbeat(service: Service, interval: float) -> None:
    sent = service.metrics.counter(
        "marquee_heartbeats_sent_total", "Heartbeats published to ops.heartbeats", ("service",)
    )

    def kafka_check() -> tuple[bool, str]:
        last = service.last_heartbeat_at
        if last is None:
            return False, "no heartbeat confirmed by Kafka yet"
        age = time.monotonic() - last
        return age < 3 * interval, f"last heartbeat confirmed {age:.1f} s ago"

    service.health.add("kafka", kafka_check)

    async def beat(status: str = "ok") -> None:
        event = HeartbeatEvent.create(
            {
                "service": service.name,
                "instance": service.instance,
                "status": status,
                "started_at": service.started_at,
                "version": __version__,
                "counters": dict(service.counters),
            },
            source=f"urn:marquee:{service.name}",
        )
        await service.publish(event)
        service.last_heartbeat_at = time.monotonic()
        sent.labels(service.name).inc()

    @service.app.timer(interval, on_leader=False)
    async def heartbeat() -> None:
        try:
            await beat()
        except Exception as exc:  # noqa: BLE001 - readiness reports it; the timer must live on
            log.warning("heartbeat failed: %s", exc, extra={"service": service.name})

    @service.app.task
    async def first_heartbeat() -> None:
        # Say "starting" at once instead of after the first interval.
        try:
            await beat("starting")
        except Exception as exc:  # noqa: BLE001
            log.warning("first heartbeat failed: %s", exc, extra={"service": service.name})
