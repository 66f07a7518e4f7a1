"""Alembic environment: the engine and schema come from the caller (shared.db.migrate)."""

from __future__ import annotations

from alembic import context
from sqlalchemy import text

from shared.db.engine import quoted_schema

config = context.config
schema = config.attributes.get("schema", "public")
#: The caller's connection (it holds the migration lock); shared.db.migrate passes one.
connection = config.attributes["connection"]

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
connection.commit()
