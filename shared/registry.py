"""Which services and CLI commands this installation has: entry points, never imports.

A service package declares itself in ``pyproject.toml``::

    [project.entry-points."marquee.services"]
    recommender = "services.recommender:SERVICE"      # a ServiceSpec

    [project.entry-points."marquee.commands"]
    recommender = "services.recommender.cli:register"  # register(subparsers)

so ``shared/`` names no service, and adding one touches its own package and
``pyproject.toml`` only (then ``pip install -e .`` refreshes the entry points).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from importlib.metadata import entry_points
from typing import TYPE_CHECKING

from .config import Settings
from .errors import ConfigurationError

if TYPE_CHECKING:
    from .service import Service

SERVICES_GROUP = "marquee.services"
COMMANDS_GROUP = "marquee.commands"


@dataclass(frozen=True)
class ServiceSpec:
    """What the platform needs to know of a service without importing its runtime."""

    name: str
    #: One line for ``marquee serve --help`` and the demo.
    summary: str
    #: Its settings class; its ``http_port`` default is the service's own port.
    settings: type[Settings]
    #: ``"module:function"`` taking the settings and returning the chassis
    #: :class:`~shared.service.Service`; imported only when the service is started.
    build: str

    @property
    def default_port(self) -> int:
        return int(self.settings.model_fields["http_port"].default)

    def create(self, settings: Settings) -> Service:
        module, _, attr = self.build.partition(":")
        return getattr(importlib.import_module(module), attr)(settings)


@cache
def services() -> dict[str, ServiceSpec]:
    """Every installed service by name, ordered by default port."""
    found: dict[str, ServiceSpec] = {}
    for point in entry_points(group=SERVICES_GROUP):
        spec = point.load()
        if not isinstance(spec, ServiceSpec) or spec.name != point.name:
            raise ConfigurationError(
                f"entry point {point.name} = {point.value} in {SERVICES_GROUP} is not a "
                f"ServiceSpec named {point.name!r}"
            )
        found[spec.name] = spec
    if not found:
        raise ConfigurationError(
            "no Marquee services are installed: run `make setup` (or `pip install -e .`)"
        )
    return dict(sorted(found.items(), key=lambda item: (item[1].default_port, item[0])))


def service(name: str) -> ServiceSpec:
    """The installed service ``name``; a clear error naming the known ones otherwise."""
    known = services()
    if name not in known:
        raise ConfigurationError(f"unknown service {name!r}; known: {', '.join(known)}")
    return known[name]


def command_registrars() -> list[Callable]:
    """The ``register(subparsers)`` functions services add to the ``marquee`` CLI."""
    return [
        point.load() for point in sorted(entry_points(group=COMMANDS_GROUP), key=lambda p: p.name)
    ]
