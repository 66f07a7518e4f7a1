"""The statistics against known cases and simulated clustered traffic (fixed seeds)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from shared.experiments.simulation import TRUE_CTR, users
from shared.experiments.statistics import (
    UserCounts,
    analyse,
    compare,
    ratio_estimate,
    sample_ratio,
)

Z = float(stats.norm.isf(0.025))


def rows(arm, impressions, clicks, pre=None, offset=0):
    pre = pre if pre is not None else [None] * len(impressions)
    return [
        UserCounts(f"{arm}-{k + offset}", arm, int(n), int(c), None if x is None else float(x))
        for k, (n, c, x) in enumerate(zip(impressions, clicks, pre, strict=True))
    ]


def test_delta_method_on_a_hand_computed_case():
    # Two users: (n, c) = (2, 1) and (4, 0). R = 1/6; z_i = R + (c_i - R n_i) / 3.
    ctr, var = ratio_estimate([1, 0], [2, 4])
    z = np.array([1 / 6 + (1 - 2 / 6) / 3, 1 / 6 + (0 - 4 / 6) / 3])
    assert ctr == pytest.approx(1 / 6)
    assert var == pytest.approx(z.var(ddof=1) / 2)


def test_delta_method_ci_covers_the_true_ctr_95_percent_and_the_binomial_one_does_not():
    rng = np.random.default_rng(19)
    sims, delta_hits, naive_hits = 1_000, 0, 0
    for _ in range(sims):
        n, c, _ = users(rng, 2_000)
        ctr, var = ratio_estimate(c, n)
        delta_hits += abs(ctr - TRUE_CTR) <= Z * np.sqrt(var)
        naive_hits += abs(ctr - TRUE_CTR) <= Z * np.sqrt(ctr * (1 - ctr) / n.sum())
    assert 0.93 <= delta_hits / sims <= 0.97
    assert naive_hits / sims < 0.88  # impressions treated as independent: too narrow


def test_an_aa_test_is_significant_about_5_percent_of_the_time():
    rng = np.random.default_rng(1919)
    sims = 1_000
    positives = 0
    for _ in range(sims):
        a, b = users(rng, 1_500), users(rng, 1_500)
        result = compare("b", "a", ratio_estimate(b[1], b[0]), ratio_estimate(a[1], a[0]), Z)
        positives += result.p_value < 0.05
    assert 0.035 <= positives / sims <= 0.065


def test_a_real_lift_is_found_with_an_interval_around_it():
    rng = np.random.default_rng(7)
    a, b = users(rng, 40_000), users(rng, 40_000, lift=0.10)
    report = analyse(rows("a", a[0], a[1]) + rows("b", b[0], b[1]), {"a": 1.0, "b": 1.0})
    (lift,) = report.comparisons
    assert lift.significant() and lift.p_value < 1e-6
    assert lift.lift_ci[0] < 0.10 < lift.lift_ci[1]
    assert lift.lift_ci[0] > 0.03
    assert lift.difference_ci[0] < lift.difference < lift.difference_ci[1]
    arm_a = report.arms[0]
    assert arm_a.users == 40_000 and arm_a.clicks == int(a[1].sum())
    assert arm_a.ci[0] < TRUE_CTR < arm_a.ci[1]
    assert not report.sample_ratio.mismatch


def test_cuped_shrinks_the_variance_and_keeps_the_estimate():
    rng = np.random.default_rng(11)
    a = users(rng, 20_000, pre_period=100)
    b = users(rng, 20_000, lift=0.05, pre_period=100)
    data = rows("a", a[0], a[1], a[2]) + rows("b", b[0], b[1], b[2])
    plain = analyse(data, {"a": 1.0, "b": 1.0})
    adjusted = analyse(data, {"a": 1.0, "b": 1.0}, cuped=True)
    for p, q in zip(plain.arms, adjusted.arms, strict=True):
        assert q.variance < 0.8 * p.variance
        assert abs(q.ctr - p.ctr) < 2 * np.sqrt(p.variance)
    assert adjusted.cuped and not plain.cuped
    width = [r.comparisons[0].lift_ci[1] - r.comparisons[0].lift_ci[0] for r in (plain, adjusted)]
    assert width[1] < 0.9 * width[0]


def test_srm_flags_a_52_48_split_of_100k_users():
    check = sample_ratio({"a": 52_000, "b": 48_000}, {"a": 1.0, "b": 1.0})
    assert check.mismatch and check.chi2 == pytest.approx(160.0)
    assert check.expected == {"a": 50_000.0, "b": 50_000.0}


def test_srm_leaves_fair_splits_alone():
    rng = np.random.default_rng(3)
    flagged = 0
    for _ in range(200):
        a = int(rng.binomial(100_000, 0.25))
        flagged += sample_ratio({"a": a, "b": 100_000 - a}, {"a": 1.0, "b": 3.0}).mismatch
    assert flagged <= 2
    assert not sample_ratio({"a": 25_100, "b": 74_900}, {"a": 1.0, "b": 3.0}).mismatch


def test_users_without_impressions_count_for_srm_only():
    data = [UserCounts("u1", "a", 0, 0), UserCounts("u2", "a", 3, 1), UserCounts("u3", "a", 2, 0)]
    data += [UserCounts("u4", "b", 4, 1), UserCounts("u5", "b", 1, 1)]
    report = analyse(data, {"a": 1.0, "b": 1.0})
    assert report.sample_ratio.observed == {"a": 3, "b": 2}
    assert [a.users for a in report.arms] == [3, 2]
    assert report.arms[0].ctr == pytest.approx(1 / 5)


def test_an_unknown_arm_is_named():
    with pytest.raises(ValueError, match="arm 'c'"):
        analyse([UserCounts("u1", "c", 1, 0)], {"a": 1.0, "b": 1.0})


def test_arms_without_any_variance_do_not_claim_a_difference():
    same = [UserCounts(f"u{k}", "a" if k % 2 else "b", 3, 1) for k in range(1_000)]
    (comparison,) = analyse(same, {"a": 1.0, "b": 1.0}).comparisons
    assert comparison.p_value == 1.0 and not comparison.significant()
