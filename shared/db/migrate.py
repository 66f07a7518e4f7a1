"""Apply Alembic migrations programmatically (``marquee db upgrade`` and start-up)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, text

from .engine import quoted_schema

MIGRATIONS = Path(__file__).resolve().parent / "migrations"


def _config(engine: Engine, schema: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["engine"] = engine
    cfg.attributes["schema"] = schema
    return cfg


def upgrade(engine: Engine, schema: str = "public", revision: str = "head") -> None:
    """Bring ``schema`` up to ``revision``; a no-op when it is already there."""
    with engine.begin() as conn:
        conn.execute(text(f"CREATE SCHEMA IF NOT EXISTS {quoted_schema(schema)}"))
    command.upgrade(_config(engine, schema), revision)


def current_revision(engine: Engine, schema: str = "public") -> str | None:
    with engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"version_table_schema": schema})
        return ctx.get_current_revision()
