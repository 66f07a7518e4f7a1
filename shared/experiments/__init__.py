"""Experiments: A/B tests and interleaving of recommendation strategies, their bucketing and
their statistics (pure modules), and the Postgres store that keeps their definitions.

They live in ``shared/`` because the recommender (which arm serves a user, which ranker fills
a slot), the feedback consumer (counts per arm) and the dashboard (reports) all need the same
definitions, and services never import each other.
"""

from .bucketing import arm_for, bucket_of
from .model import Arm, Experiment, parse_arm

__all__ = ["Arm", "Experiment", "arm_for", "bucket_of", "parse_arm"]
