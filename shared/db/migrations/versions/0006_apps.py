"""Apps: the collector's per-app API keys, hashed at rest.

Each front end (a web site, a mobile app) gets a key from ``marquee apps add``. Only the
SHA-256 of the key is stored: the key is 256 random bits, so a plain hash is enough (a slow
password hash guards guessable secrets, which these are not), and a stolen table holds
nothing that can be sent to the collector. ``key_id`` is the key's public prefix: the
collector finds the row by it, then compares the hashes in constant time. A revoked app
keeps its row (``revoked_at``) so its name and id are never handed out again.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql as pg

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "apps",
        sa.Column("name", sa.Text, primary_key=True),
        sa.Column("key_id", sa.Text, nullable=False, unique=True),
        sa.Column("key_sha256", sa.LargeBinary, nullable=False),
        sa.Column("event_types", pg.ARRAY(sa.Text, dimensions=1), nullable=False),
        sa.Column("source", sa.Text, nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            nullable=False,
            server_default=sa.text("now()"),
        ),
        sa.Column("revoked_at", sa.DateTime(timezone=True)),
    )


def downgrade() -> None:
    op.drop_table("apps")
