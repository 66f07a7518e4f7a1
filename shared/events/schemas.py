"""JSON Schemas generated from the event models, checked in under ``shared/schemas``.

``marquee schemas generate`` rewrites them; a test fails when they drift from the models,
so a change to a contract is always visible in review as a schema diff.
"""

from __future__ import annotations

import json
from pathlib import Path

from .envelope import EXTENSION_NAME
from .models import EVENT_TYPES

SCHEMA_DIR = Path(__file__).resolve().parent.parent / "schemas"
SCHEMA_BASE_URI = "https://marquee.dev/schemas/"


def render() -> dict[str, str]:
    """File name -> schema text for every event type."""
    files = {}
    for event_type, cls in sorted(EVENT_TYPES.items()):
        schema = cls.model_json_schema(mode="validation")
        # Extension attributes: any attribute named as CloudEvents names them, nothing else.
        known = "|".join(schema["properties"])
        extension = f"^(?!({known})$){EXTENSION_NAME.pattern.removeprefix('^')}"
        schema["patternProperties"] = {extension: schema.pop("additionalProperties")}
        schema["additionalProperties"] = False
        schema = {
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "$id": f"{SCHEMA_BASE_URI}{event_type}.json",
            **schema,
            "title": event_type,
        }
        files[f"{event_type}.json"] = json.dumps(schema, indent=2, sort_keys=True) + "\n"
    return files


def write(directory: Path = SCHEMA_DIR) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in render().items():
        path = directory / name
        if not path.exists() or path.read_text() != text:
            path.write_text(text)
            written.append(path)
    return written


def drift(directory: Path = SCHEMA_DIR) -> list[str]:
    """Names of schema files that are missing, stale or no longer generated."""
    expected = render()
    present = {p.name for p in directory.glob("*.json")} if directory.is_dir() else set()
    stale = [n for n, t in expected.items() if n not in present or (directory / n).read_text() != t]
    return sorted(stale + sorted(present - set(expected)))
