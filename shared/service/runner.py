"""Run a service's Faust worker in this process (``marquee serve NAME``)."""

from __future__ import annotations

import importlib

from ..config import Settings
from ..errors import ConfigurationError
from . import Service

SERVICES = ("recommender", "generator", "dashboard")


def load(name: str, settings: Settings) -> Service:
    """Import ``services.<name>.app`` and call its ``build(settings)``."""
    if name not in SERVICES:
        raise ConfigurationError(f"unknown service {name!r}; known: {', '.join(SERVICES)}")
    try:
        module = importlib.import_module(f"services.{name}.app")
    except ModuleNotFoundError as exc:
        if exc.name != f"services.{name}.app":
            raise
        raise ConfigurationError(f"the {name} service is not part of this release yet") from None
    return module.build(settings)


def run(service: Service, loglevel: str = "info") -> None:
    from faust import Worker

    Worker(service.app, loglevel=loglevel).execute_from_commandline()
