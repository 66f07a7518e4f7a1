"""Engine factory. Each caller builds its own engine; nothing is created at import."""

from __future__ import annotations

import re

from sqlalchemy import Engine, create_engine, event

from ..config import Settings
from ..errors import ConfigurationError

_SCHEMA = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


def quoted_schema(name: str) -> str:
    """The schema name as a quoted SQL identifier, after checking it is a plain one.

    Identifiers cannot be bound parameters, so every place that names a schema in SQL
    goes through here (settings, ``--schema`` options, migrations).
    """
    if not _SCHEMA.match(name):
        raise ConfigurationError(
            f"invalid schema name {name!r}: use lower-case letters, digits and underscores"
        )
    return f'"{name}"'


def make_engine(settings: Settings, *, schema: str | None = None, **kwargs) -> Engine:
    """An engine whose connections use ``schema`` (default: the configured one) first.

    Tests pass a fresh schema per test; services use ``MARQUEE_POSTGRES_SCHEMA``.
    """
    schema = schema or settings.postgres_schema
    quoted = quoted_schema(schema)
    engine = create_engine(
        settings.postgres_dsn.get_secret_value(),
        pool_pre_ping=True,
        connect_args={"connect_timeout": 5, "application_name": settings.kafka_client_id},
        **kwargs,
    )
    if schema != "public":

        @event.listens_for(engine, "connect")
        def _set_search_path(dbapi_conn, _record):  # noqa: ANN001
            with dbapi_conn.cursor() as cur:
                cur.execute(f"SET search_path TO {quoted}, public")
            dbapi_conn.commit()

    return engine
