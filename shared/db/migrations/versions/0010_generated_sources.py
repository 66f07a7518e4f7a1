"""Generated content keeps the catalog items it was written from, and a digest's impression.

A digest introduces the recommender's items and a grounded assistant answer cites the
items it retrieved; the reply of record lists them (``item_ids``), so a request replayed
after a crash gets the very same list. ``impression_id`` is the recommendation list's
impression, when the recommender sent one, so clicks on a briefing are attributed to it.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-03
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql as pg

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("generated_content", sa.Column("item_ids", pg.ARRAY(sa.Text, dimensions=1)))
    op.add_column("generated_content", sa.Column("impression_id", sa.Text))


def downgrade() -> None:
    op.drop_column("generated_content", "impression_id")
    op.drop_column("generated_content", "item_ids")
