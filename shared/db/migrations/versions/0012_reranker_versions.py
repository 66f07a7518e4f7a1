"""Re-ranker versions: the learned re-ranker's checkpoints, their offline NDCG, their status.

One row per trained re-ranker: the river pipeline's bytes (``model_format`` says how to read
them), the features it reads, NDCG@10 of its re-ranked lists and of ALS's own order on the
same offline split, and a status. A version that does not beat ALS order offline is
``rejected`` and never ``active``; at most one version is active (the partial unique index),
so activation is one transaction that retires the old one.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-03
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql as pg

revision = "0012"
# The head on main when this was written; a branch merged before it moves this pointer.
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "reranker_versions",
        sa.Column("version", sa.Integer, sa.Identity(), primary_key=True),
        sa.Column(
            "trained_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.Column("status", sa.Text, nullable=False),
        sa.Column("model", sa.LargeBinary, nullable=False),
        sa.Column("model_format", sa.Text, nullable=False),
        sa.Column("features", pg.ARRAY(sa.Text, dimensions=1), nullable=False),
        sa.Column("ndcg", sa.Float, nullable=False),
        sa.Column("baseline_ndcg", sa.Float, nullable=False),
        sa.Column("metrics", pg.JSONB, nullable=False, server_default=sa.text("'{}'::jsonb")),
        sa.CheckConstraint(
            "status IN ('active', 'rejected', 'retired')", name="reranker_versions_status"
        ),
        # The gate in the table too: no path activates a version that lost to ALS order.
        sa.CheckConstraint(
            "status <> 'active' OR ndcg > baseline_ndcg", name="reranker_versions_beats_baseline"
        ),
    )
    op.create_index(
        "reranker_versions_one_active",
        "reranker_versions",
        ["status"],
        unique=True,
        postgresql_where=sa.text("status = 'active'"),
    )


def downgrade() -> None:
    op.drop_table("reranker_versions")
