"""The collector: CloudEvents over HTTP from browsers and apps, checked, onto Kafka."""

from shared.registry import ServiceSpec

from .settings import CollectorSettings

SERVICE = ServiceSpec(
    name="collector",
    summary="HTTP front door for browsers and apps: API keys, CORS, beacons -> Kafka",
    settings=CollectorSettings,
    build="services.collector.app:build",
)
