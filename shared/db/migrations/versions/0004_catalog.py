"""The catalog: items carry what the newsroom published and a content vector.

``marquee.item.v1`` events upsert these columns (interactions only ever register an id);
``content`` is the item's text embedded by the recommender (``content_model`` says by
what), from which a new item gets factors before anyone reads it. ``updated_at`` lets
every recommender worker adopt another's catalog changes (an item hidden at once).

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql as pg

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

COLUMNS = (
    sa.Column("summary", sa.Text),
    sa.Column("body", sa.Text),
    sa.Column("tags", pg.ARRAY(sa.Text, dimensions=1)),
    sa.Column("language", sa.Text),
    sa.Column("url", sa.Text),
    sa.Column("published_at", sa.DateTime(timezone=True)),
    sa.Column("expires_at", sa.DateTime(timezone=True)),
    sa.Column("hidden", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("content", pg.ARRAY(sa.REAL, dimensions=1)),
    sa.Column("content_model", sa.Text),
    sa.Column(
        "updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.text("now()")
    ),
)


def upgrade() -> None:
    for column in COLUMNS:
        op.add_column("items", column)
    op.create_index("items_updated_at", "items", ["updated_at"])


def downgrade() -> None:
    op.drop_index("items_updated_at", "items")
    for column in reversed(COLUMNS):
        op.drop_column("items", column.name)
