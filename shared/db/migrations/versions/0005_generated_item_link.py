"""Generated content links to its catalog item by id, not by foreign key.

The generator publishes each complete piece on ``catalog``; the recommender writes the
item's row when it consumes it, later and in another process. A foreign key to ``items``
would make the generator wait for the recommender (or leave ``item_id`` NULL, as it had
to since 0004), so the generator stores the id it published and the catalog stays the
recommender's. The index finds a piece from its item (the dashboard, a reader's click).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03
"""

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

#: Postgres's own name for 0001's unnamed constraint.
FOREIGN_KEY = "generated_content_item_id_fkey"


def upgrade() -> None:
    op.drop_constraint(FOREIGN_KEY, "generated_content", type_="foreignkey")
    op.create_index("generated_content_item_id", "generated_content", ["item_id"])


def downgrade() -> None:
    op.drop_index("generated_content_item_id", "generated_content")
    # NOT VALID: rows stored meanwhile may name items the recommender has not written yet;
    # the key holds for new rows, old ones are not checked.
    op.execute(
        f"ALTER TABLE generated_content ADD CONSTRAINT {FOREIGN_KEY}"
        " FOREIGN KEY (item_id) REFERENCES items (item_id) NOT VALID"
    )
