"""The collector's settings: the shared ones plus its own (prefix ``MARQUEE_``)."""

from __future__ import annotations

from pydantic import Field, model_validator

from shared.config import Settings


class CollectorSettings(Settings):
    #: Each service has its own port (recommender 6066 ... dashboard 6068, collector 6069).
    http_port: int = Field(default=6069, ge=1, le=65535)
    #: Browser origins allowed to send events, comma-separated (``https://news.example``);
    #: ``*`` allows any. Empty: no browser may (apps and servers send no Origin and pass).
    collector_cors_origins: str = ""
    #: The most events in one batched request (more: 413).
    collector_max_batch_events: int = Field(default=100, ge=1, le=10_000)
    #: The largest request body in bytes (more: 413). Browsers cap a beacon at 64 KiB.
    collector_max_request_bytes: int = Field(default=1024 * 1024, ge=1024, le=16 * 1024 * 1024)
    #: Events per second each app may send on average, per collector instance (more: 429).
    collector_rate_per_second: float = Field(default=1000.0, gt=0)
    #: Events an app may send at once above its rate (at least the largest batch).
    collector_rate_burst: int = Field(default=2000, ge=1)
    #: How often the apps and their keys are read again from Postgres: a new key works, and a
    #: revoked one stops working, within this many seconds.
    collector_keys_refresh_seconds: float = Field(default=5.0, ge=0.2, le=3600)
    #: How long a request waits for the broker to confirm its events (then 503).
    collector_confirm_timeout_seconds: float = Field(default=10.0, gt=0, le=120)
    #: Threads that publish and wait for confirmations (kafka-python blocks).
    collector_publish_threads: int = Field(default=8, ge=1, le=256)

    @model_validator(mode="after")
    def _burst_holds_a_batch(self) -> CollectorSettings:
        if self.collector_rate_burst < self.collector_max_batch_events:
            raise ValueError(
                "MARQUEE_COLLECTOR_RATE_BURST must be at least MARQUEE_COLLECTOR_MAX_BATCH_EVENTS "
                "(a full batch could never pass)"
            )
        return self

    @property
    def cors_origins(self) -> tuple[str, ...]:
        return tuple(o.strip() for o in self.collector_cors_origins.split(",") if o.strip())
