"""The dashboard's settings: the shared ones plus its own (prefix ``MARQUEE_``)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr, model_validator

from shared.config import Settings

#: Where ``npm ci`` (deploy/setup.sh) puts the charting library, beside package.json.
DEFAULT_NODE_MODULES = Path(__file__).resolve().parent / "node_modules"


class DashboardSettings(Settings):
    #: Each service has its own port (recommender 6066, generator 6067, dashboard 6068).
    http_port: int = Field(default=6068, ge=1, le=65535)
    #: With MARQUEE_HTTP_TOKEN set, requests from this machine (loopback) need no token,
    #: unless this is true: then every request does, as on the other services. Set it when a
    #: reverse proxy on this machine forwards outside traffic (every request looks local).
    dashboard_token_for_local: bool = False

    # Sampling: offsets, heartbeats and dead letters every ``sample_seconds``; Postgres
    # every ``postgres_seconds``; consumer groups and topic configs every ``discovery_seconds``.
    dashboard_sample_seconds: float = Field(default=2.0, ge=0.2, le=60)
    dashboard_postgres_seconds: float = Field(default=10.0, ge=0.5, le=600)
    dashboard_discovery_seconds: float = Field(default=15.0, ge=0.5, le=3600)
    #: How much history the charts keep in memory (ring buffers).
    dashboard_history_seconds: float = Field(default=300.0, ge=10, le=3600)
    #: Burrow's sliding window: observations of each partition's committed offset.
    dashboard_lag_window: int = Field(default=10, ge=2, le=100)
    #: At start-up, heartbeats this old are read back so instances show at once.
    dashboard_heartbeat_lookback_seconds: float = Field(default=600.0, ge=10, le=86_400)
    #: An instance without a heartbeat for this long is shown as missing.
    dashboard_heartbeat_stale_seconds: float = Field(default=30.0, ge=1, le=3600)
    #: Bounds on what the dashboard tracks (and on its Prometheus label sets).
    dashboard_max_groups: int = Field(default=50, ge=1, le=1000)
    dashboard_max_instances: int = Field(default=200, ge=1, le=10_000)
    dashboard_dead_letters_kept: int = Field(default=10, ge=1, le=200)

    #: The explorer asks the recommender's HTTP API (what apps get, fold-ins included);
    #: unset: this machine, on the recommender's default port (from the service registry).
    dashboard_recommender_url: str | None = None
    #: Bearer token for the recommender; MARQUEE_HTTP_TOKEN when unset (one token per stack).
    dashboard_recommender_token: SecretStr | None = None
    #: The Feedback panel samples the feedback service's /metrics/ctr this often, over a
    #: sliding window this long; unset URL: this machine, on the feedback service's port.
    dashboard_feedback_url: str | None = None
    dashboard_feedback_seconds: float = Field(default=5.0, ge=0.5, le=600)
    dashboard_feedback_window_seconds: int = Field(default=300, ge=90, le=30 * 86_400)
    dashboard_node_modules: Path = DEFAULT_NODE_MODULES

    @model_validator(mode="after")
    def _intervals_are_consistent(self) -> DashboardSettings:
        if self.dashboard_history_seconds < self.dashboard_sample_seconds * 2:
            raise ValueError(
                "MARQUEE_DASHBOARD_HISTORY_SECONDS must cover at least two samples "
                "(MARQUEE_DASHBOARD_SAMPLE_SECONDS)"
            )
        return self

    @property
    def history_points(self) -> int:
        """Ring buffer length: the history plus one, and never shorter than the lag window."""
        points = int(self.dashboard_history_seconds / self.dashboard_sample_seconds) + 1
        return max(points, self.dashboard_lag_window)

    def recommender_url(self) -> str:
        if self.dashboard_recommender_url:
            return self.dashboard_recommender_url
        from shared.registry import service

        return f"http://127.0.0.1:{service('recommender').default_port}"

    def feedback_url(self) -> str:
        if self.dashboard_feedback_url:
            return self.dashboard_feedback_url
        from shared.registry import service

        return f"http://127.0.0.1:{service('feedback').default_port}"

    def recommender_token(self) -> SecretStr | None:
        return self.dashboard_recommender_token or self.http_token
