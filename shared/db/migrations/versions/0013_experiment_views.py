"""Experiment reports read the feedback rows: ``experiment_user_counts`` and
``experiment_interleaving_credits`` become views (same names and columns as 0011's tables)
over feedback_impressions / feedback_slots / feedback_interactions, and each slot records
the arm that contributed it to an interleaved list.

Views rather than a second copy kept by the consumer: one write per event, and a report is
always what the feedback rows say (a redelivered event is one row there already). A slot is
clicked when a click names its impression and its item, as ``/metrics/ctr`` counts; the
attribution window is not applied (a view takes no parameters): the recommender mints
impression ids per list, so a late click on a list still belongs to that list's arm.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-03
"""

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

#: Slots with at least one click naming their impression and item.
_CLICKED = """
    SELECT s.impression_id, s.position, s.arm
    FROM feedback_slots s
    WHERE EXISTS (
        SELECT 1 FROM feedback_interactions f
        WHERE f.impression_id = s.impression_id AND f.item_id = s.item_id
          AND f.action = 'click')
"""

#: One row per A/B user: slots shown, slots clicked, and clicks in the 28 days before the
#: start (the CUPED covariate, 0 for a user without any).
USER_COUNTS = f"""
CREATE VIEW experiment_user_counts AS
WITH shown AS (
    SELECT i.experiment, i.user_id, i.arm, i.impression_id, i.slots
    FROM feedback_impressions i
    JOIN experiments e ON e.name = i.experiment AND e.kind = 'ab'
    WHERE i.arm IS NOT NULL
), clicked AS (
    SELECT impression_id, count(*) AS clicks FROM ({_CLICKED}) c GROUP BY impression_id
), pre AS (
    SELECT e.name AS experiment, f.user_id, count(*) AS clicks
    FROM feedback_interactions f
    JOIN experiments e ON f.occurred_at < e.starts_at
     AND f.occurred_at >= e.starts_at - interval '28 days'
    WHERE f.action = 'click' AND e.kind = 'ab'
    GROUP BY e.name, f.user_id
)
SELECT sh.experiment, sh.user_id, sh.arm,
       sum(sh.slots)::bigint AS impressions,
       coalesce(sum(c.clicks), 0)::bigint AS clicks,
       coalesce(max(p.clicks), 0)::float8 AS pre_period
FROM shown sh
LEFT JOIN clicked c USING (impression_id)
LEFT JOIN pre p USING (experiment, user_id)
GROUP BY sh.experiment, sh.user_id, sh.arm
"""

#: One row per interleaved list and per ranker, 0 clicks included (a tie).
CREDITS = f"""
CREATE VIEW experiment_interleaving_credits AS
WITH credited AS (
    SELECT impression_id, arm, count(*) AS clicks FROM ({_CLICKED}) c
    GROUP BY impression_id, arm
)
SELECT i.experiment, i.impression_id, a.arm, coalesce(cr.clicks, 0)::int AS clicks
FROM feedback_impressions i
JOIN experiments e ON e.name = i.experiment AND e.kind = 'interleaving'
JOIN experiment_arms a ON a.experiment = i.experiment
LEFT JOIN credited cr ON cr.impression_id = i.impression_id AND cr.arm = a.arm
"""


def upgrade() -> None:
    op.add_column("feedback_slots", sa.Column("arm", sa.Text))
    op.drop_table("experiment_interleaving_credits")
    op.drop_table("experiment_user_counts")
    op.execute(USER_COUNTS)
    op.execute(CREDITS)


def downgrade() -> None:
    op.execute("DROP VIEW experiment_interleaving_credits")
    op.execute("DROP VIEW experiment_user_counts")
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
    op.drop_column("feedback_slots", "arm")
