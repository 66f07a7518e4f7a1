"""Run a service's Faust worker in this process (``marquee serve NAME``)."""

from __future__ import annotations

import logging
from pathlib import Path

from ..config import Settings, load_settings
from ..errors import MarqueeError
from ..logging import configure_logging
from ..registry import service as find_service
from . import Service

log = logging.getLogger(__name__)


class KafkaUnavailable(MarqueeError):
    """No broker answered at start-up, or none accepted the credentials."""


def load(name: str, env_file: Path | None = None) -> Service:
    """Build the installed service ``name`` (shared/registry.py) with its own settings
    class loaded from the environment and ``env_file``."""
    spec = find_service(name)
    return spec.create(load_settings(spec.settings, env_file))


def ensure_topics_at_startup(settings: Settings) -> None:
    """The same registry code as ``marquee topics ensure``: agents subscribe to topics that
    exist with the registry's settings, whoever started first. A broker that cannot be
    reached (or refuses the credentials) stops the start in one line, not a page of
    client retries (within 5 s: the caller passes ``settings.for_prompt()``)."""
    from kafka.admin import KafkaAdminClient

    from ..kafka import failures
    from ..kafka.admin import ensure_from_settings
    from ..kafka.client import client_options

    with failures.capture() as seen:
        try:
            admin = KafkaAdminClient(**client_options(settings))
        except Exception as exc:
            if failures.unreachable(exc):
                raise KafkaUnavailable(failures.explain(settings, seen)) from None
            raise
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
    ensure_topics_at_startup(settings.for_prompt())
    # Our handlers (MARQUEE_LOG_FORMAT=json included), not mode's colour logger on stdout.
    worker = Worker(service.app, loglevel=settings.log_level.lower(), override_logging=False)
    if not worker.stdout.isatty():
        # Faust's start-up spinner is for a terminal; in a log file it is escape codes.
        worker.spinner = None
    worker.execute_from_commandline()
