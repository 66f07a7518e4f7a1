"""LM versions: fine-tuned language models, their perplexities and which one is served.

A row is registered by ``marquee lm finetune --register`` with the perplexities the ONNX
engine measured for it and for its base model in the same run (so the two compare like
with like), the corpus fingerprint and the hyper-parameters. ``status`` is ``candidate``
(passed the quality gate, not served), ``rejected`` (failed it), ``active`` (served; at
most one, enforced by a partial unique index) or ``retired`` (served before).

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-03
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql as pg

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

NOW = sa.text("now()")


def upgrade() -> None:
    op.create_table(
        "lm_versions",
        sa.Column("version", sa.Text, primary_key=True),
        sa.Column("base", sa.Text, nullable=False),
        sa.Column("model_dir", sa.Text, nullable=False),
        sa.Column("corpus_fingerprint", sa.Text, nullable=False),
        sa.Column("hyperparameters", pg.JSONB, nullable=False),
        sa.Column("base_validation_perplexity", sa.Float, nullable=False),
        sa.Column("base_test_perplexity", sa.Float),
        sa.Column("validation_perplexity", sa.Float, nullable=False),
        sa.Column("test_perplexity", sa.Float),
        sa.Column("status", sa.Text, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=NOW),
        sa.Column("activated_at", sa.DateTime(timezone=True)),
        sa.CheckConstraint(
            "status IN ('candidate', 'rejected', 'active', 'retired')", name="lm_versions_status"
        ),
    )
    op.create_index(
        "lm_versions_one_active",
        "lm_versions",
        ["status"],
        unique=True,
        postgresql_where=sa.text("status = 'active'"),
    )


def downgrade() -> None:
    op.drop_index("lm_versions_one_active", "lm_versions")
    op.drop_table("lm_versions")
