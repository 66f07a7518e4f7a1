"""The ``apps`` table (migration 0006): the collector's API keys, hashed at rest."""

from __future__ import annotations

import re
from collections.abc import Iterable

from sqlalchemy import Engine, text
from sqlalchemy.exc import IntegrityError

from shared.errors import ConfigurationError
from shared.events import EVENT_TYPES

from .keys import App, key_sha256, new_key

NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
#: What a front end may send. Service-to-service types (heartbeats, dead letters, replies,
#: generated content) only ever come from Marquee's own services.
EXTERNAL_TYPES = frozenset(
    {"marquee.interaction.v1", "marquee.item.v1", "marquee.content_request.v1"}
)

_COLUMNS = "name, key_id, key_sha256, event_types, source, created_at, revoked_at"


def _app(row) -> App:
    return App(
        name=row.name,
        key_id=row.key_id,
        key_sha256=bytes(row.key_sha256),
        event_types=frozenset(row.event_types),
        source=row.source,
        created_at=row.created_at,
        revoked_at=row.revoked_at,
    )


def check_app(name: str, event_types: Iterable[str], source: str) -> list[str]:
    """The app's definition, checked; its event types sorted. Raises ConfigurationError."""
    if not NAME.match(name):
        raise ConfigurationError(
            f"app name {name[:70]!r}: use 1 to 63 lower-case letters, digits, '-' and '_'"
        )
    types = sorted(set(event_types))
    if not types:
        raise ConfigurationError("name at least one event type (--types marquee.interaction.v1)")
    for event_type in types:
        if event_type not in EVENT_TYPES:
            raise ConfigurationError(
                f"unknown event type {event_type!r}; known: {', '.join(sorted(EVENT_TYPES))}"
            )
        if event_type not in EXTERNAL_TYPES:
            raise ConfigurationError(
                f"{event_type} comes only from Marquee's own services; an app may send "
                f"{', '.join(sorted(EXTERNAL_TYPES))}"
            )
    if not 1 <= len(source) <= 256 or any(ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F for c in source):
        raise ConfigurationError("--source must be 1 to 256 characters without control characters")
    return types


class AppStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def add(self, name: str, event_types: Iterable[str], source: str) -> tuple[App, str]:
        """A new app and its key: the key is returned once and stored only as its hash."""
        types = check_app(name, event_types, source)
        key_id, key = new_key()
        try:
            with self.engine.begin() as conn:
                row = conn.execute(
                    text(
                        "INSERT INTO apps (name, key_id, key_sha256, event_types, source)"
                        " VALUES (:name, :key_id, :hash, :types, :source)"
                        f" RETURNING {_COLUMNS}"
                    ),
                    {
                        "name": name,
                        "key_id": key_id,
                        "hash": key_sha256(key),
                        "types": types,
                        "source": source,
                    },
                ).one()
        except IntegrityError:
            raise ConfigurationError(
                f"an app named {name!r} exists already (revoked apps keep their name): "
                "choose another name"
            ) from None
        return _app(row), key

    def all(self) -> list[App]:
        with self.engine.connect() as conn:
            rows = conn.execute(text(f"SELECT {_COLUMNS} FROM apps ORDER BY name")).all()
        return [_app(r) for r in rows]

    def active(self) -> list[App]:
        with self.engine.connect() as conn:
            rows = conn.execute(text(f"SELECT {_COLUMNS} FROM apps WHERE revoked_at IS NULL")).all()
        return [_app(r) for r in rows]

    def revoke(self, name: str) -> bool:
        """True when ``name`` was active and is revoked now."""
        with self.engine.begin() as conn:
            done = conn.execute(
                text(
                    "UPDATE apps SET revoked_at = now() WHERE name = :name AND revoked_at IS NULL"
                ),
                {"name": name},
            )
        return done.rowcount == 1
