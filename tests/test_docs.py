"""docs/configuration.md names every setting there is, and no setting there is not."""

from __future__ import annotations

import re
from pathlib import Path

from shared.config import Settings
from shared.registry import services

DOC = Path(__file__).resolve().parents[1] / "docs" / "configuration.md"


def variables(cls: type[Settings]) -> set[str]:
    return {f"MARQUEE_{name.upper()}" for name in cls.model_fields}


def test_every_setting_is_documented_and_every_documented_one_exists():
    # Each variable in full in its row's first cell: `| `MARQUEE_...` | default | meaning |`.
    documented = set(re.findall(r"^\| `(MARQUEE_[A-Z0-9_]+)` \|", DOC.read_text(), re.M))
    settings = variables(Settings).union(*(variables(s.settings) for s in services().values()))
    # Read by the deploy scripts and the settings file rule, not by a settings class.
    stack = {"MARQUEE_KAFKA_PORT", "MARQUEE_KAFKA_SASL_PORT", "MARQUEE_PG_PORT", "MARQUEE_RUN_DIR"}
    stack |= {"MARQUEE_ENV_FILE", "MARQUEE_PG_PASSWORD"}
    assert settings - documented == set(), "undocumented settings"
    assert documented - settings - stack == set(), "documented settings that do not exist"
