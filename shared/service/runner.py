"""Run a service's Faust worker in this process (``marquee serve NAME``)."""

from __future__ import annotations

import importlib
import logging
from pathlib import Path

from ..config import Settings, load_settings
from ..errors import ConfigurationError
from ..logging import configure_logging
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

    from ..kafka.admin import ensure_from_settings
    from ..kafka.client import client_options

    admin = KafkaAdminClient(**client_options(settings))
    try:
        report = ensure_from_settings(admin, settings)
    finally:
        admin.close()
    for name, problems in report.drift.items():
        log.warning("topic %s differs from the registry: %s", name, "; ".join(problems))
    if report.created:
        log.info("created topics: %s", ", ".join(report.created))


def run(service: Service) -> None:
    """Configure logging from the settings, ensure topics, run the worker until stopped."""
    from faust import Worker

    settings = service.settings
    configure_logging(settings.log_level, settings.log_format)
    ensure_topics_at_startup(settings)
    # Our handlers (MARQUEE_LOG_FORMAT=json included), not mode's colour logger on stdout.
    Worker(
        service.app, loglevel=settings.log_level.lower(), override_logging=False
    ).execute_from_commandline()
