"""Simulated clustered click traffic, for the statistics' tests and benchmarks (seeded numpy).

Users differ in how much they read (impressions ~ 1 + Poisson(Gamma)) and in how likely
they click (p ~ Beta), so one user's impressions are correlated trials: the situation in
which a per-impression binomial interval is too narrow.
"""

from __future__ import annotations

import numpy as np

#: Beta(1, 15): mean CTR 1/16, intraclass correlation 1/17.
ALPHA, BETA = 1.0, 15.0
TRUE_CTR = ALPHA / (ALPHA + BETA)


def users(rng: np.random.Generator, count: int, *, lift: float = 0.0, pre_period: int = 0):
    """Per-user (impressions, clicks, pre-period clicks); ``lift`` scales each user's CTR."""
    impressions = 1 + rng.poisson(rng.gamma(1.0, 8.0, count))
    p = rng.beta(ALPHA, BETA, count)
    clicks = rng.binomial(impressions, np.minimum(p * (1 + lift), 1.0))
    pre = rng.binomial(pre_period, p) if pre_period else np.zeros(count, dtype=int)
    return impressions, clicks, pre
