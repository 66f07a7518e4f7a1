"""Fold-in factors: upserted per (version, external id), and found by recency.

Between retrains a worker folds changed users (and new items) into the active version
and upserts their factors into ``user_factors`` / ``item_factors``; the other workers
pick them up by ``updated_at``, and a worker that starts later loads them with the rest.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28
"""

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    for side in ("user", "item"):
        op.create_index(
            f"{side}_factors_external_id",
            f"{side}_factors",
            ["model_version", "external_id"],
            unique=True,
        )
        op.create_index(
            f"{side}_factors_updated_at", f"{side}_factors", ["model_version", "updated_at"]
        )
    # Popularity windows and decayed popularity read recent interactions by time.
    op.create_index("interactions_occurred_at", "interactions", ["occurred_at"])


def downgrade() -> None:
    op.drop_index("interactions_occurred_at", "interactions")
    for side in ("user", "item"):
        op.drop_index(f"{side}_factors_updated_at", f"{side}_factors")
        op.drop_index(f"{side}_factors_external_id", f"{side}_factors")
