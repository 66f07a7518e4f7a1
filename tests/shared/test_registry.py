"""Services and their commands come from entry points, each with its own port."""

from __future__ import annotations

import argparse

import pytest

from shared import registry
from shared.config import Settings, load_settings
from shared.errors import ConfigurationError


def test_every_service_is_installed_with_its_settings_and_its_own_port():
    specs = registry.services()
    assert list(specs) == [
        "recommender",
        "generator",
        "dashboard",
        "collector",
        "feedback",
    ]  # by port
    assert {name: spec.default_port for name, spec in specs.items()} == {
        "recommender": 6066,
        "generator": 6067,
        "dashboard": 6068,
        "collector": 6069,
        "feedback": 6071,
    }
    for spec in specs.values():
        assert issubclass(spec.settings, Settings) and spec.settings is not Settings
        assert spec.build.endswith(".app:build") and spec.summary


def test_the_defaults_give_each_service_its_own_port(monkeypatch):
    monkeypatch.delenv("MARQUEE_HTTP_PORT", raising=False)
    ports = [load_settings(s.settings, "").http_port for s in registry.services().values()]
    assert len(set(ports)) == len(ports) == 5


def test_an_unknown_service_names_the_known_ones():
    with pytest.raises(ConfigurationError, match="unknown service 'recomender'.*recommender"):
        registry.service("recomender")


def test_services_add_their_commands():
    parser = argparse.ArgumentParser()
    commands = parser.add_subparsers(dest="command")
    for register in registry.command_registrars():
        register(commands)
    assert {"generate", "model", "eval", "train", "recommend", "models", "apps"} <= set(
        commands.choices
    )
