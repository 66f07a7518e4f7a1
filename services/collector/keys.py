"""App API keys: made, hashed and checked here (pure: no database, no web framework).

A key is ``mqk_<key id>_<secret>``: the key id (12 hex digits) is public and finds the app;
the secret is 256 random bits. Only the SHA-256 of the whole key is stored. A slow password
hash would guard a guessable secret; 256 random bits are not guessable, so one SHA-256 is
enough, and it keeps the check cheap on every request.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

PREFIX = "mqk"
_KEY = re.compile(rf"^{PREFIX}_([0-9a-f]{{12}})_[A-Za-z0-9_-]{{43}}$")


def new_key() -> tuple[str, str]:
    """``(key id, key)``: a fresh random key; the caller shows it once and stores its hash."""
    key_id = secrets.token_hex(6)
    return key_id, f"{PREFIX}_{key_id}_{secrets.token_urlsafe(32)}"


def key_sha256(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


def key_id_of(key: str) -> str | None:
    """The public id in ``key``, or ``None`` when it is not shaped like a key at all."""
    match = _KEY.match(key)
    return match.group(1) if match else None


@dataclass(frozen=True)
class App:
    """A front end allowed to send events: which types, and under which ``source``."""

    name: str
    key_id: str
    key_sha256: bytes
    event_types: frozenset[str]
    source: str
    created_at: datetime | None = None
    revoked_at: datetime | None = None

    def __repr__(self) -> str:  # the hash is not a secret, but it belongs in no log either
        return f"App(name={self.name!r}, key_id={self.key_id!r}, source={self.source!r})"


class KeyRing:
    """The active apps by key id, swapped whole when the store is read again."""

    def __init__(self, apps: Iterable[App] = ()) -> None:
        self._by_id: dict[str, App] = {}
        self.replace(apps)

    def replace(self, apps: Iterable[App]) -> None:
        self._by_id = {app.key_id: app for app in apps if app.revoked_at is None}

    def __len__(self) -> int:
        return len(self._by_id)

    def authenticate(self, key: str | None) -> App | None:
        """The app whose key this is, or ``None`` (missing, malformed, unknown or wrong)."""
        if not key:
            return None
        key_id = key_id_of(key)
        app = self._by_id.get(key_id) if key_id else None
        if app is None:
            return None
        # Constant time: how much of the hash matched must not show in the answer's timing.
        return app if hmac.compare_digest(key_sha256(key), app.key_sha256) else None
