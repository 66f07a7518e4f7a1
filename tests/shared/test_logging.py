"""JSON log lines: one object per line, extras as fields, never an exception from formatting."""

from __future__ import annotations

import io
import json
import logging
from datetime import UTC, datetime

import pytest

from shared.logging import JsonFormatter


def strict_loads(line: str) -> dict:
    """json.loads that refuses NaN/Infinity, which are not JSON (log pipelines reject them)."""

    def refuse(constant):
        raise ValueError(f"not JSON: {constant}")

    return json.loads(line, parse_constant=refuse)


@pytest.fixture
def log_lines():
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("marquee.test.json")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    yield logger, lambda: stream.getvalue().splitlines()
    logger.removeHandler(handler)


def record(msg="hello", args=(), exc_info=None, **extra) -> logging.LogRecord:
    r = logging.LogRecord("marquee.test", logging.INFO, __file__, 1, msg, args, exc_info)
    r.__dict__.update(extra)
    return r


def test_one_json_object_per_line_with_extras(log_lines):
    logger, lines = log_lines
    extra = {"topic": "interactions", "partition": 2}
    logger.info("consumed %d events\nfrom %s", 3, "interactions", extra=extra)
    logger.warning("second")
    first, second = (strict_loads(line) for line in lines())
    assert first["message"] == "consumed 3 events\nfrom interactions"
    assert first["level"] == "INFO" and first["logger"] == "marquee.test.json"
    assert first["topic"] == "interactions" and first["partition"] == 2
    assert datetime.fromisoformat(first["time"]).tzinfo is not None
    assert second["level"] == "WARNING" and "topic" not in second
    assert not {"args", "msg", "levelno", "pathname"} & set(first)  # standard attributes stay out


def test_exception_is_a_field_on_the_same_line(log_lines):
    logger, lines = log_lines
    try:
        raise ValueError("bad offset")
    except ValueError:
        logger.exception("commit failed", extra={"offset": 41})
    (line,) = lines()
    doc = strict_loads(line)
    assert "ValueError: bad offset" in doc["exception"]
    assert doc["offset"] == 41


@pytest.mark.parametrize(
    "value",
    [object(), {1, 2}, b"\xff\x00", datetime(2025, 1, 1, tzinfo=UTC), ValueError("x")],
    ids=["object", "set", "bytes", "datetime", "exception"],
)
def test_non_serializable_extras_become_strings(value):
    doc = strict_loads(JsonFormatter().format(record(payload=value)))
    assert doc["payload"] == str(value)


def _circular():
    d = {}
    d["self"] = d
    return d


@pytest.mark.parametrize(
    "value",
    [{(1, 2): "tuple key"}, _circular(), float("nan"), {"lag": float("inf")}],
    ids=["non-str-dict-key", "circular", "nan", "nested-inf"],
)
def test_awkward_extras_still_give_one_valid_json_line(value):
    # A log call must never raise or emit a line a JSON parser refuses.
    line = JsonFormatter().format(record(payload=value))
    assert "\n" not in line
    doc = strict_loads(line)
    assert doc["message"] == "hello" and "payload" in doc
