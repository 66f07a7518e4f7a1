"""Initial schema: interactions, catalog, id maps, model versions, factors, generated content.

Revision ID: 0001
Revises:
Create Date: 2026-11-28
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql as pg

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

NOW = sa.text("now()")


def upgrade() -> None:
    # Dense ids for ALS: users.idx / items.idx index the factor matrices' rows.
    op.create_table(
        "users",
        sa.Column("user_id", sa.Text, primary_key=True),
        sa.Column("idx", sa.Integer, sa.Identity(start=0, minvalue=0), nullable=False, unique=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=NOW),
    )
    op.create_table(
        "items",
        sa.Column("item_id", sa.Text, primary_key=True),
        sa.Column("idx", sa.Integer, sa.Identity(start=0, minvalue=0), nullable=False, unique=True),
        sa.Column("kind", sa.Text, nullable=False, server_default="item"),
        sa.Column("title", sa.Text),
        sa.Column("origin", sa.Text, nullable=False, server_default="external"),
        sa.Column("attributes", pg.JSONB, nullable=False, server_default=sa.text("'{}'::jsonb")),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=NOW),
    )

    # One row per event: (source, id) is the CloudEvents idempotency key.
    op.create_table(
        "interactions",
        sa.Column("event_source", sa.Text, primary_key=True),
        sa.Column("event_id", sa.Text, primary_key=True),
        sa.Column("user_id", sa.Text, nullable=False),
        sa.Column("item_id", sa.Text, nullable=False),
        sa.Column("action", sa.Text, nullable=False),
        sa.Column("weight", sa.REAL, nullable=False),
        sa.Column("dwell_seconds", sa.REAL),
        sa.Column("rating", sa.REAL),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ingested_at", sa.DateTime(timezone=True), nullable=False, server_default=NOW),
        # Where the event was read, for tracing a row back to the log.
        sa.Column("kafka_topic", sa.Text),
        sa.Column("kafka_partition", sa.Integer),
        sa.Column("kafka_offset", sa.BigInteger),
        sa.CheckConstraint(
            "action IN ('view', 'click', 'like', 'share', 'dwell')", name="interactions_action"
        ),
    )
    op.create_index("interactions_user_time", "interactions", ["user_id", "occurred_at"])
    op.create_index("interactions_item_time", "interactions", ["item_id", "occurred_at"])

    # Aggregated implicit-feedback confidence per user x item (what ALS trains on).
    op.create_table(
        "user_item",
        sa.Column("user_id", sa.Text, primary_key=True),
        sa.Column("item_id", sa.Text, primary_key=True),
        sa.Column("confidence", sa.REAL, nullable=False),
        sa.Column("events", sa.Integer, nullable=False),
        sa.Column("last_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("user_item_item", "user_item", ["item_id"])

    op.create_table(
        "model_versions",
        sa.Column("id", sa.Integer, sa.Identity(), primary_key=True),
        sa.Column("trained_at", sa.DateTime(timezone=True), nullable=False, server_default=NOW),
        sa.Column("status", sa.Text, nullable=False),
        sa.Column("params", pg.JSONB, nullable=False, server_default=sa.text("'{}'::jsonb")),
        sa.Column("metrics", pg.JSONB, nullable=False, server_default=sa.text("'{}'::jsonb")),
        sa.Column("n_users", sa.Integer),
        sa.Column("n_items", sa.Integer),
        sa.Column("n_interactions", sa.BigInteger),
        sa.Column("fit_seconds", sa.REAL),
        sa.CheckConstraint(
            "status IN ('training', 'candidate', 'active', 'rejected', 'retired')",
            name="model_versions_status",
        ),
    )
    # At most one active model: activation is one transaction that retires the old one.
    op.create_index(
        "model_versions_one_active",
        "model_versions",
        ["status"],
        unique=True,
        postgresql_where=sa.text("status = 'active'"),
    )
    for side in ("user", "item"):
        op.create_table(
            f"{side}_factors",
            sa.Column(
                "model_version",
                sa.Integer,
                sa.ForeignKey("model_versions.id", ondelete="CASCADE"),
                primary_key=True,
            ),
            # Row of the version's factor matrix, and the id it belongs to: a version is
            # self-contained, whatever ids arrive after it was trained.
            sa.Column("idx", sa.Integer, primary_key=True),
            sa.Column("external_id", sa.Text, nullable=False),
            sa.Column("factors", pg.ARRAY(sa.REAL, dimensions=1), nullable=False),
            sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=NOW),
        )

    op.create_table(
        "generated_content",
        sa.Column("request_id", sa.Text, primary_key=True),
        sa.Column("reply_id", sa.Text, nullable=False, unique=True),
        sa.Column("kind", sa.Text, nullable=False),
        sa.Column("prompt", sa.Text, nullable=False),
        sa.Column("status", sa.Text, nullable=False),
        sa.Column("text", sa.Text),
        sa.Column("error", sa.Text),
        sa.Column("model", sa.Text, nullable=False),
        sa.Column("prompt_tokens", sa.Integer, nullable=False, server_default="0"),
        sa.Column("completion_tokens", sa.Integer, nullable=False, server_default="0"),
        sa.Column("finish_reason", sa.Text),
        sa.Column("timings", pg.JSONB, nullable=False, server_default=sa.text("'{}'::jsonb")),
        sa.Column("item_id", sa.Text, sa.ForeignKey("items.item_id")),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=NOW),
        sa.CheckConstraint("status IN ('ok', 'error')", name="generated_content_status"),
    )


def downgrade() -> None:
    for table in (
        "generated_content",
        "item_factors",
        "user_factors",
        "model_versions",
        "user_item",
        "interactions",
        "items",
        "users",
    ):
        op.drop_table(table)
