"""Engine factory. Each caller builds its own engine; nothing is created at import."""

from __future__ import annotations

from sqlalchemy import Engine, create_engine, event

from ..config import Settings


def make_engine(settings: Settings, *, schema: str | None = None, **kwargs) -> Engine:
    """An engine whose connections use ``schema`` (default: the configured one) first.

    Tests pass a fresh schema per test; services use ``MARQUEE_POSTGRES_SCHEMA``.
    """
    schema = schema or settings.postgres_schema
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
                # An identifier cannot be a bound parameter; the schema name is validated
                # by Settings (lower-case letters, digits, underscore) and quoted here.
                cur.execute(f'SET search_path TO "{schema}", public')
            dbapi_conn.commit()

    return engine
