"""The checked-in JSON Schemas match the models and validate what the codec produces.

Needs the ``jsonschema`` package (dev extra): an independent validator, so the schemas
other teams consume are checked by something other than pydantic itself.
"""

from __future__ import annotations

import json

import pytest
from jsonschema import Draft202012Validator

from shared.errors import InvalidEvent
from shared.events import EVENT_TYPES, EventCodec
from shared.events.schemas import SCHEMA_BASE_URI, SCHEMA_DIR, drift, render, write

CODEC = EventCodec()


def validator(event_type: str) -> Draft202012Validator:
    schema = json.loads((SCHEMA_DIR / f"{event_type}.json").read_text())
    return Draft202012Validator(schema)


def test_checked_in_schemas_match_the_models():
    assert drift() == [], "run `marquee schemas generate` and commit the result"


def test_one_schema_file_per_event_type():
    present = sorted(p.name for p in SCHEMA_DIR.glob("*.json"))
    assert present == sorted(f"{t}.json" for t in EVENT_TYPES)


def test_drift_reports_missing_stale_and_orphaned_files(tmp_path):
    assert write(tmp_path) and drift(tmp_path) == []
    assert write(tmp_path) == []  # idempotent: nothing rewritten
    (tmp_path / "marquee.interaction.v1.json").write_text("{}\n")
    (tmp_path / "marquee.heartbeat.v1.json").unlink()
    (tmp_path / "marquee.retired.v0.json").write_text("{}\n")
    assert drift(tmp_path) == [
        "marquee.heartbeat.v1.json",
        "marquee.interaction.v1.json",
        "marquee.retired.v0.json",
    ]


@pytest.mark.parametrize("event_type", sorted(EVENT_TYPES))
def test_schema_is_valid_2020_12(event_type):
    schema = json.loads((SCHEMA_DIR / f"{event_type}.json").read_text())
    Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["$id"] == f"{SCHEMA_BASE_URI}{event_type}.json"
    assert schema["title"] == event_type
    assert json.loads(render()[f"{event_type}.json"]) == schema


@pytest.mark.parametrize("event_type", sorted(EVENT_TYPES))
def test_encoded_sample_validates_against_its_schema(sample_event, event_type):
    doc = json.loads(CODEC.encode(sample_event(event_type, subject="s-1")))
    errors = [e.message for e in validator(event_type).iter_errors(doc)]
    assert errors == []


@pytest.mark.parametrize("event_type", sorted(EVENT_TYPES))
def test_sample_of_another_type_is_rejected(sample_event, event_type):
    other = next(t for t in sorted(EVENT_TYPES) if t != event_type)
    doc = json.loads(CODEC.encode(sample_event(other)))
    assert not validator(event_type).is_valid(doc)


BAD = [
    ("unknown-data-field", lambda d: d["data"].update(colour="red")),
    ("unknown-envelope-field", lambda d: d.update(Colour="red")),
    ("extension-name-with-underscore", lambda d: d.update(my_ext="x")),
    ("extension-name-too-long", lambda d: d.update(a23456789012345678901="x")),
    ("extension-value-not-scalar", lambda d: d.update(traceparent={"a": 1})),
    ("missing-specversion", lambda d: d.pop("specversion")),
    ("control-char-in-source", lambda d: d.update(source="urn:app\x00")),
    ("wrong-data-type", lambda d: d["data"].update(user_id=5)),
    ("missing-data-field", lambda d: d["data"].pop("item_id")),
    ("bad-enum", lambda d: d["data"].update(action="poke")),
    ("out-of-range", lambda d: d["data"].update(rating=11)),
    ("control-char-in-id", lambda d: d.update(id="e\n1")),
    ("control-char-in-user-id", lambda d: d["data"].update(user_id="u\x00")),
    ("missing-id", lambda d: d.pop("id")),
    ("wrong-specversion", lambda d: d.update(specversion="0.3")),
    ("other-type", lambda d: d.update(type="marquee.heartbeat.v1")),
]


def test_extension_attributes_are_valid_for_schema_and_codec(sample_event):
    doc = json.loads(CODEC.encode(sample_event("marquee.interaction.v1")))
    doc.update(traceparent="00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", seq=7)
    assert validator("marquee.interaction.v1").is_valid(doc)
    assert CODEC.decode(json.dumps(doc)).model_extra["seq"] == 7


@pytest.mark.parametrize("mutate", [b[1] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_interaction_is_rejected_by_schema_and_codec(sample_event, mutate):
    doc = json.loads(CODEC.encode(sample_event("marquee.interaction.v1")))
    assert validator("marquee.interaction.v1").is_valid(doc)
    mutate(doc)
    assert not validator("marquee.interaction.v1").is_valid(doc)
    with pytest.raises(InvalidEvent):  # the schema and the codec agree
        CODEC.decode(json.dumps(doc))
