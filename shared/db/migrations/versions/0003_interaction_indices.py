"""Interactions carry their user's and item's dense indices.

A retrain reads every interaction; joining each row's text ids to ``users`` and ``items``
took half of that read. Ingest registers both ids before it stores the interaction, so it
writes their indices alongside. Rows stored before this revision are backfilled (any id
never registered is registered first).

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-28
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

SIDES = (("user_idx", "users", "user_id"), ("item_idx", "items", "item_id"))


def upgrade() -> None:
    for column, table, key in SIDES:
        op.add_column("interactions", sa.Column(column, sa.Integer))
        op.execute(
            f"INSERT INTO {table} ({key}) SELECT DISTINCT {key} FROM interactions"
            f" ORDER BY 1 ON CONFLICT DO NOTHING"
        )
        op.execute(
            f"UPDATE interactions x SET {column} = t.idx FROM {table} t WHERE t.{key} = x.{key}"
        )
        op.alter_column("interactions", column, nullable=False)


def downgrade() -> None:
    for column, _, _ in SIDES:
        op.drop_column("interactions", column)
