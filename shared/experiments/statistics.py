"""A/B statistics for click-through rate, a ratio of per-user sums (pure numpy/scipy).

A user sees many impressions and their clicks are correlated, so impressions are not
independent trials: the binomial interval ``p(1-p)/n`` is too narrow (it undercovers, and
an A/A test "finds" differences far more often than alpha). The unit of randomisation is
the user, so CTR is a ratio of means over users, sum(clicks) / sum(impressions), and its
variance comes from the delta method (Deng, Knoblich and Lu, "Applying the Delta Method in
Metric Analytics", KDD 2018). Everything below works on the per-user linearisation

    z_i = R + (c_i - R * n_i) / mean(n)

whose mean is R and whose variance over N users is the delta-method variance of R. CUPED
(Deng et al., WSDM 2013) then subtracts theta * (x_i - mean(x)) for a pre-period covariate
x, with one theta pooled over the arms so the adjustment cannot favour one of them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

#: SRM is flagged far below alpha: it is checked on every report, and a false alarm
#: throws away a valid experiment.
SRM_ALPHA = 0.001


@dataclass(frozen=True)
class UserCounts:
    """One user's traffic in one arm: what ``report`` reads (see store.USER_COUNTS_SQL)."""

    user_id: str
    arm: str
    impressions: int
    clicks: int
    #: The user's activity before the experiment started (e.g. pre-period clicks), for CUPED.
    pre_period: float | None = None


@dataclass(frozen=True)
class ArmEstimate:
    arm: str
    users: int
    impressions: int
    clicks: int
    ctr: float
    variance: float  # of the CTR estimate
    ci: tuple[float, float]


@dataclass(frozen=True)
class Comparison:
    """A treatment arm against the control."""

    arm: str
    control: str
    difference: float  # ctr(arm) - ctr(control)
    difference_ci: tuple[float, float]
    lift: float  # ctr(arm) / ctr(control) - 1
    lift_ci: tuple[float, float]
    p_value: float

    def significant(self, alpha: float = 0.05) -> bool:
        return self.p_value < alpha


@dataclass(frozen=True)
class SampleRatio:
    """Users per arm against the split the weights promise (chi-square goodness of fit)."""

    observed: dict[str, int]
    expected: dict[str, float]
    chi2: float
    p_value: float

    @property
    def mismatch(self) -> bool:
        return self.p_value < SRM_ALPHA


@dataclass(frozen=True)
class Report:
    arms: list[ArmEstimate]
    comparisons: list[Comparison]
    sample_ratio: SampleRatio
    cuped: bool
    alpha: float


def linearised(clicks: np.ndarray, impressions: np.ndarray) -> tuple[float, np.ndarray]:
    """The ratio R = sum(c) / sum(n) and each user's linearised contribution z_i to it."""
    clicks = np.asarray(clicks, dtype=float)
    impressions = np.asarray(impressions, dtype=float)
    mean_n = impressions.mean()
    ratio = clicks.sum() / impressions.sum()
    return ratio, ratio + (clicks - ratio * impressions) / mean_n


def ratio_estimate(clicks, impressions) -> tuple[float, float]:
    """CTR and its delta-method variance, users as the independent unit."""
    ratio, z = linearised(clicks, impressions)
    return ratio, float(z.var(ddof=1) / len(z))


def cuped_theta(zs: Sequence[np.ndarray], xs: Sequence[np.ndarray]) -> float:
    """theta = cov(z, x) / var(x), pooled within arms (arm means removed first)."""
    zc = np.concatenate([z - z.mean() for z in zs])
    xc = np.concatenate([x - x.mean() for x in xs])
    var_x = float(xc @ xc)
    return float(zc @ xc) / var_x if var_x > 0 else 0.0


def sample_ratio(counts: Mapping[str, int], weights: Mapping[str, float]) -> SampleRatio:
    """Chi-square test of the users per arm against the weights' split."""
    names = list(weights)
    observed = np.array([counts.get(n, 0) for n in names], dtype=float)
    share = np.array([weights[n] for n in names], dtype=float)
    expected = observed.sum() * share / share.sum()
    if observed.sum() == 0:
        return SampleRatio(dict.fromkeys(names, 0), dict.fromkeys(names, 0.0), 0.0, 1.0)
    chi2, p_value = stats.chisquare(observed, expected)
    return SampleRatio(
        observed={n: int(o) for n, o in zip(names, observed, strict=True)},
        expected={n: float(e) for n, e in zip(names, expected, strict=True)},
        chi2=float(chi2),
        p_value=float(p_value),
    )


def compare(
    arm: str, control: str, treated: tuple[float, float], base: tuple[float, float], z: float
) -> Comparison:
    """Difference and relative lift of two independent (ctr, variance) estimates.

    The lift's interval is built on the log of the ratio and mapped back: the ratio of two
    estimates is skewed, and the log scale keeps the interval inside (-1, inf).
    """
    (r1, v1), (r0, v0) = treated, base
    difference, se = r1 - r0, float(np.sqrt(v0 + v1))
    if se > 1e-12:
        p_value = float(2 * stats.norm.sf(abs(difference) / se))
    else:  # no variance at all (every user alike): only the difference itself can speak
        p_value = 1.0 if abs(difference) <= 1e-12 else 0.0
    if r0 > 0 and r1 > 0:
        log_ratio, log_se = np.log(r1 / r0), np.sqrt(v1 / r1**2 + v0 / r0**2)
        lift_ci = (float(np.expm1(log_ratio - z * log_se)), float(np.expm1(log_ratio + z * log_se)))
        lift = r1 / r0 - 1
    else:
        lift, lift_ci = float("nan"), (float("nan"), float("nan"))
    return Comparison(
        arm=arm,
        control=control,
        difference=difference,
        difference_ci=(difference - z * se, difference + z * se),
        lift=float(lift),
        lift_ci=lift_ci,
        p_value=p_value,
    )


def analyse(
    rows: Sequence[UserCounts],
    weights: Mapping[str, float],
    *,
    alpha: float = 0.05,
    cuped: bool = False,
) -> Report:
    """Per-arm CTR with CIs, every arm against the first (the control), and the SRM check.

    ``weights`` names the arms in order, control first. With ``cuped``, a user without a
    pre-period value counts as 0 (new users had no activity before the experiment).
    """
    names = list(weights)
    z_crit = float(stats.norm.isf(alpha / 2))
    by_arm: dict[str, list[UserCounts]] = {n: [] for n in names}
    for row in rows:
        if row.arm not in by_arm:
            raise ValueError(f"user {row.user_id}: arm {row.arm!r} is not one of {names}")
        if row.impressions < 0 or not 0 <= row.clicks:
            raise ValueError(f"user {row.user_id}: counts must be >= 0")
        by_arm[row.arm].append(row)
    # Users with no impression carry no CTR information (they still count for SRM).
    srm = sample_ratio({n: len(r) for n, r in by_arm.items()}, weights)
    served = {n: [r for r in rs if r.impressions > 0] for n, rs in by_arm.items()}
    estimates: dict[str, tuple[float, float]] = {}
    zs, xs = {}, {}
    for name, rs in served.items():
        if len(rs) >= 2:
            c = np.fromiter((r.clicks for r in rs), float, len(rs))
            n = np.fromiter((r.impressions for r in rs), float, len(rs))
            _, zs[name] = linearised(c, n)
            xs[name] = np.fromiter((r.pre_period or 0.0 for r in rs), float, len(rs))
    if cuped and zs:
        theta = cuped_theta(list(zs.values()), list(xs.values()))
        x_mean = float(np.concatenate(list(xs.values())).mean())
        zs = {n: z - theta * (xs[n] - x_mean) for n, z in zs.items()}
    arms = []
    for name in names:
        rs = served[name]
        impressions = sum(r.impressions for r in rs)
        clicks = sum(r.clicks for r in rs)
        if name in zs:
            ctr, variance = float(zs[name].mean()), float(zs[name].var(ddof=1) / len(zs[name]))
            estimates[name] = (ctr, variance)
            se = np.sqrt(variance)
            ci = (float(ctr - z_crit * se), float(ctr + z_crit * se))
        else:
            ctr = clicks / impressions if impressions else float("nan")
            variance, ci = float("nan"), (float("nan"), float("nan"))
        arms.append(ArmEstimate(name, len(by_arm[name]), impressions, clicks, ctr, variance, ci))
    control = names[0]
    comparisons = [
        compare(name, control, estimates[name], estimates[control], z_crit)
        for name in names[1:]
        if name in estimates and control in estimates
    ]
    return Report(arms, comparisons, srm, cuped, alpha)
