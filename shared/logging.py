"""Logging set-up for entrypoints: plain text for people, JSON lines for machines.

Library code only does ``log = logging.getLogger(__name__)`` and passes context as
``extra={...}``; the JSON formatter turns those extras into fields.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime

_STANDARD = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        doc = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        doc.update({k: v for k, v in record.__dict__.items() if k not in _STANDARD})
        if record.exc_info:
            doc["exception"] = self.formatException(record.exc_info)
        try:
            return json.dumps(doc, default=str, allow_nan=False)
        except (TypeError, ValueError):
            # Odd extras (non-string keys, cycles, NaN) must not cost us the log line.
            return json.dumps({k: _safe(v) for k, v in doc.items()}, default=str)


def _safe(value):
    try:
        json.dumps(value, default=str, allow_nan=False)
        return value
    except (TypeError, ValueError):
        return repr(value)


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        extras = {k: v for k, v in record.__dict__.items() if k not in _STANDARD}
        if extras:
            line += " " + " ".join(f"{k}={v}" for k, v in extras.items())
        return line


def configure_logging(level: str = "INFO", fmt: str = "text") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # kafka-python is chatty at INFO about every connection it opens.
    logging.getLogger("kafka").setLevel(max(logging.WARNING, root.level))
