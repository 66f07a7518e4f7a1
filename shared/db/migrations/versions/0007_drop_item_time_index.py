"""Interactions lose the (item_id, occurred_at) index no query uses.

Every ingested event updates each index of ``interactions``, and index maintenance is most
of what a batch write costs Postgres. Each index was checked against the queries that read
the table: the primary key (source, id) is the idempotency check; (user_id, occurred_at)
serves a user's history on the dashboard; (occurred_at) serves the newest event and the
popularity windows. Nothing filters or orders interactions by item: popularity groups
every row by item (a full scan) and per-item histories read ``user_item``. So
``interactions_item_time`` only cost writes.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03
"""

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_index("interactions_item_time", "interactions")


def downgrade() -> None:
    op.create_index("interactions_item_time", "interactions", ["item_id", "occurred_at"])
