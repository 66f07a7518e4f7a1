"""Run a service's Faust worker in this process (``marquee serve NAME``)."""

from __future__ import annotations

import importlib
import logging
from pathlib import Path

from ..config import Settings, load_settings
from ..errors import ConfigurationError
from . import Service

log = logging.getLogger(__name__)

SERVICES = ("recommender", "generator", "dashboard")


def load(name: str, env_file: Path | None = None) -> Service:
    """Import ``services.<name>.app`` and call its ``build()`` with its own settings class
    (``SETTINGS`` in that module) loaded from the environment and ``env_file``."""
    if name not in SERVICES:
        raise ConfigurationError(f"unknown service {name!r}; known: {', '.join(SERVICES)}")
    try:
        module = importlib.import_module(f"services.{name}.app")
    except ModuleNotFoundError as exc:
        if exc.name != f"services.{name}.app":
            raise
        raise ConfigurationError(f"the {name} service is not part of this release yet") from None
    return module.build(load_settings(getattr(module, "SETTINGS", Settings), env_file))


def ensure_topics_at_startup(settings: Settings) -> None:
    """The same registry code as ``marquee topics ensure``: agents subscribe to topics that
    exist with the registry's settings, whoever started first."""
    from kafka.admin import KafkaAdminClient

    from ..kafka.admin import ensure_topics
    from ..kafka.client import client_options

    admin = KafkaAdminClient(**client_options(settings))
    try:
        report = ensure_topics(
            admin,
            prefix=settings.topic_prefix,
            replication=settings.topic_replication,
            partitions=settings.topic_partitions,
        )
    finally:
        admin.close()
    for name, problems in report.drift.items():
        log.warning("topic %s differs from the registry: %s", name, "; ".join(problems))
    if report.created:
        log.info("created topics: %s", ", ".join(report.created))


def run(service: Service, loglevel: str = "info") -> None:
    from faust import Worker

    ensure_topics_at_startup(service.settings)
    Worker(service.app, loglevel=loglevel).execute_from_commandline()
