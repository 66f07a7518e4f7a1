"""Feedback: the lists served (impressions, one row per slot) and the clicks, likes and
dwells that may be attributed to them, kept by services/feedback.

Rows, not counters: every table is keyed by the event's own identity (the impression id,
the interaction's ``source`` + ``id``), so a redelivered event is one ``ON CONFLICT DO
NOTHING`` away from being counted once, and CTR is a query over rows that can always be
checked against them. Attribution is a join at read time (impression id, item, within the
window), so it does not depend on which topic's event arrived first.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-03
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
# 0007 is reserved by another branch: whoever merges second sets this to "0007".
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "feedback_impressions",
        sa.Column("impression_id", sa.Text, primary_key=True),
        sa.Column("user_id", sa.Text, nullable=False),
        sa.Column("served_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("strategy", sa.Text, nullable=False),
        sa.Column("model_version", sa.Integer),
        sa.Column("surface", sa.Text, nullable=False),
        sa.Column("experiment", sa.Text),
        sa.Column("arm", sa.Text),
        sa.Column("slots", sa.Integer, nullable=False),
    )
    op.create_index("feedback_impressions_served_at", "feedback_impressions", ["served_at"])
    op.create_table(
        "feedback_slots",
        sa.Column(
            "impression_id",
            sa.Text,
            sa.ForeignKey("feedback_impressions.impression_id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("position", sa.SmallInteger, primary_key=True),
        sa.Column("item_id", sa.Text, nullable=False),
        sa.Column("score", sa.Float, nullable=False),
    )
    op.create_table(
        "feedback_interactions",
        sa.Column("event_source", sa.Text, primary_key=True),
        sa.Column("event_id", sa.Text, primary_key=True),
        sa.Column("impression_id", sa.Text),
        sa.Column("user_id", sa.Text, nullable=False),
        sa.Column("item_id", sa.Text, nullable=False),
        sa.Column("action", sa.Text, nullable=False),
        sa.Column("dwell_seconds", sa.Float),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index(
        "feedback_interactions_impression",
        "feedback_interactions",
        ["impression_id", "item_id"],
        postgresql_where=sa.text("impression_id IS NOT NULL"),
    )
    op.create_index("feedback_interactions_occurred_at", "feedback_interactions", ["occurred_at"])


def downgrade() -> None:
    op.drop_table("feedback_interactions")
    op.drop_table("feedback_slots")
    op.drop_table("feedback_impressions")
