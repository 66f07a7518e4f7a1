"""Which arm a user is in: a stable hash of experiment and user, cut by the arms' weights.

SHA-256 rather than Python's ``hash()``: the builtin is salted per process
(PYTHONHASHSEED), so two workers, or one after a restart, would disagree. The experiment's
name is part of the key so that the same user's buckets in two experiments are independent.
"""

from __future__ import annotations

import hashlib
from bisect import bisect_right
from itertools import accumulate

from .model import Arm, Experiment

_SCALE = float(1 << 64)


def bucket_of(experiment: str, user_id: str) -> float:
    """A number in [0, 1), uniform over users, fixed for (experiment, user) forever."""
    digest = hashlib.sha256(f"{experiment}\x1f{user_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / _SCALE


def arm_for(experiment: Experiment, user_id: str) -> Arm:
    """The arm ``user_id`` sees in ``experiment``: arm k takes a share weight_k / sum(weights).

    Whether the experiment is running is the caller's question (``Experiment.running``).
    """
    edges = list(accumulate(a.weight for a in experiment.arms))
    point = bucket_of(experiment.name, user_id) * edges[-1]
    return experiment.arms[min(bisect_right(edges, point), len(edges) - 1)]
