"""Apply Alembic migrations programmatically (``marquee db upgrade`` and start-up)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, text

from .engine import quoted_schema

MIGRATIONS = Path(__file__).resolve().parent / "migrations"


def _config(schema: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["schema"] = schema
    return cfg


#: pg_advisory_lock key: "marquee migrations" (any constant shared by all migrators).
_LOCK_KEY = 0x6D617271756565


def upgrade(engine: Engine, schema: str = "public", revision: str = "head") -> None:
    """Bring ``schema`` up to ``revision``; a no-op when it is already there.

    Replicas starting together (compose's migrate job, several workers) take turns: the
    session-level advisory lock makes the second one find the work done.
    """
    with engine.connect() as conn:
        conn.execute(text("SELECT pg_advisory_lock(:key)"), {"key": _LOCK_KEY})
        try:
            conn.execute(text(f"CREATE SCHEMA IF NOT EXISTS {quoted_schema(schema)}"))
            conn.commit()
            cfg = _config(schema)
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, revision)
        finally:
            conn.rollback()
            conn.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": _LOCK_KEY})
            conn.commit()


def current_revision(engine: Engine, schema: str = "public") -> str | None:
    with engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"version_table_schema": schema})
        return ctx.get_current_revision()
