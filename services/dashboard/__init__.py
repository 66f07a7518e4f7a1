"""The ops dashboard: lag, throughput, heartbeats, dead letters, models and generated content."""

from shared.registry import ServiceSpec

from .settings import DashboardSettings

SERVICE = ServiceSpec(
    name="dashboard",
    summary="the ops dashboard: lag, throughput, dead letters, models, generated content",
    settings=DashboardSettings,
    build="services.dashboard.app:build",
)
