"""Experiments: their definitions and arms, and the per-user counts their reports read.

``experiments`` and ``experiment_arms`` are written by ``marquee experiments create|stop``
and read by whoever buckets users (shared/experiments/bucketing.py). An arm's ``position``
keeps the order it was given in: the first arm is the control.

``experiment_user_counts`` (one row per experiment and user: the arm, impressions, clicks
and an optional pre-period covariate for CUPED) and ``experiment_interleaving_credits``
(clicks credited to each ranker per interleaved list) are what ``report`` reads. In this
revision they are plain tables; the feedback consumer is meant to fill them, or a later
revision replaces them with views of the same name and columns over its impressions and
attributed clicks, so the report's queries need no change.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-03
"""

import sqlalchemy as sa
from alembic import op

revision = "0011"
# 0007-0010 are reserved by other branches: whoever merges after them sets this to the
# highest of them that precedes this one.
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "experiments",
        sa.Column("name", sa.Text, primary_key=True),
        sa.Column("kind", sa.Text, nullable=False),
        sa.Column("surface", sa.Text, nullable=False),
        sa.Column("starts_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("stops_at", sa.DateTime(timezone=True)),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            nullable=False,
            server_default=sa.text("now()"),
        ),
        sa.CheckConstraint("kind IN ('ab', 'interleaving')", name="experiments_kind"),
        sa.CheckConstraint("stops_at IS NULL OR stops_at > starts_at", name="experiments_stop"),
    )
    op.create_table(
        "experiment_arms",
        sa.Column(
            "experiment",
            sa.Text,
            sa.ForeignKey("experiments.name", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("arm", sa.Text, primary_key=True),
        sa.Column("position", sa.Integer, nullable=False),
        sa.Column("strategy", sa.Text, nullable=False),
        sa.Column("model_version", sa.Integer),
        sa.Column("weight", sa.Float, nullable=False),
        sa.CheckConstraint("weight > 0", name="experiment_arms_weight"),
        sa.UniqueConstraint("experiment", "position"),
    )
    op.create_table(
        "experiment_user_counts",
        sa.Column("experiment", sa.Text, primary_key=True),
        sa.Column("user_id", sa.Text, primary_key=True),
        sa.Column("arm", sa.Text, nullable=False),
        sa.Column("impressions", sa.BigInteger, nullable=False),
        sa.Column("clicks", sa.BigInteger, nullable=False),
        sa.Column("pre_period", sa.Float),
        sa.ForeignKeyConstraint(
            ["experiment", "arm"],
            ["experiment_arms.experiment", "experiment_arms.arm"],
            ondelete="CASCADE",
        ),
    )
    op.create_table(
        "experiment_interleaving_credits",
        sa.Column("experiment", sa.Text, primary_key=True),
        sa.Column("impression_id", sa.Text, primary_key=True),
        sa.Column("arm", sa.Text, primary_key=True),
        sa.Column("clicks", sa.Integer, nullable=False),
        sa.ForeignKeyConstraint(
            ["experiment", "arm"],
            ["experiment_arms.experiment", "experiment_arms.arm"],
            ondelete="CASCADE",
        ),
    )


def downgrade() -> None:
    op.drop_table("experiment_interleaving_credits")
    op.drop_table("experiment_user_counts")
    op.drop_table("experiment_arms")
    op.drop_table("experiments")
