"""Alembic environment: the engine and schema come from the caller (shared.db.migrate)."""

from __future__ import annotations

from alembic import context
from sqlalchemy import text

from shared.db.engine import quoted_schema

config = context.config
engine = config.attributes["engine"]
schema = config.attributes.get("schema", "public")

with engine.connect() as connection:
    # Migrations create unqualified tables: they land in the target schema.
    connection.execute(text(f"SET search_path TO {quoted_schema(schema)}, public"))
    connection.commit()
    context.configure(
        connection=connection,
        version_table_schema=schema,
        transaction_per_migration=True,
    )
    with context.begin_transaction():
        context.run_migrations()
