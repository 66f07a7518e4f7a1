"""Postgres through SQLAlchemy 2 (psycopg2): engine factory, tables, Alembic migrations."""

from .engine import make_engine
from .migrate import current_revision, upgrade

__all__ = ["current_revision", "make_engine", "upgrade"]
