"""Query parameters and path ids, parsed one strict way on every endpoint.

``str.isdigit`` takes "²" for a digit and ``int`` then refuses it; a window of 10^300
seconds overflows a timestamp; a NUL reaches the database driver. Every parameter goes
through here instead, so bad input is a 400 with one line saying what to send.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

#: An id in a path: anything the event schemas allow in an id (braces included), which
#: the web router's default pattern (no ``{``, ``}`` or ``/``) would answer 404 for.
PATH_ID = r"[^/]+"
_ID = re.compile(r"^[^\x00-\x1f\x7f-\x9f]{1,128}$")
_DIGITS = re.compile(r"^[0-9]{1,9}$")
_TEXT = re.compile(r"^[^\x00-\x1f\x7f-\x9f]*$")
_DURATION = re.compile(r"^([0-9]{1,9})([smhd])$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86_400}


class BadParameter(ValueError):
    """A parameter the endpoint cannot take; the message says what it wants."""


def identifier(value: str, what: str = "id") -> str:
    """A path id as the schemas define one: 1 to 128 characters, no control characters."""
    if not _ID.match(value):
        raise BadParameter(f"{what} must be 1 to 128 characters without control characters")
    return value


def integer(query: Mapping[str, str], name: str, default: int, *, low: int, high: int) -> int:
    """An integer of ASCII digits between ``low`` and ``high``."""
    raw = query.get(name)
    if raw is None:
        return default
    if not _DIGITS.match(raw) or not low <= int(raw) <= high:
        raise BadParameter(f"{name} must be a whole number from {low} to {high}, got {raw[:20]!r}")
    return int(raw)


def flag(query: Mapping[str, str], name: str, default: bool) -> bool:
    raw = query.get(name)
    if raw is None:
        return default
    if raw.lower() in ("1", "true", "yes"):
        return True
    if raw.lower() in ("0", "false", "no"):
        return False
    raise BadParameter(f"{name} must be true or false, got {raw[:20]!r}")


def text(query: Mapping[str, str], name: str, *, max_length: int) -> str | None:
    """Free text of 1 to ``max_length`` characters without control characters."""
    raw = query.get(name)
    if raw is None:
        return None
    if not 1 <= len(raw) <= max_length or not _TEXT.match(raw):
        raise BadParameter(
            f"{name} must be 1 to {max_length} characters without control characters"
        )
    return raw


def duration(query: Mapping[str, str], name: str, *, max_seconds: int) -> int | None:
    """Seconds from ``90s``, ``30m``, ``24h`` or ``7d``, at most ``max_seconds``."""
    raw = query.get(name)
    if raw is None:
        return None
    match = _DURATION.match(raw)
    seconds = int(match.group(1)) * _UNITS[match.group(2)] if match else 0
    if not 0 < seconds <= max_seconds:
        raise BadParameter(
            f"{name} must look like 90s, 30m, 24h or 7d, at most {max_seconds // 86_400} days; "
            f"got {raw[:20]!r}"
        )
    return seconds
