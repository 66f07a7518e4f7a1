"""``marquee experiments create|list|stop|report``: A/B tests and interleaving experiments.

Definitions live in Postgres (migration 0011); ``report`` reads the per-user counts the
feedback consumer keeps (shared/experiments/store.py names the query) and prints per-arm
CTR with delta-method intervals, each arm's lift over the control, and the SRM check.
"""

from __future__ import annotations

from datetime import UTC, datetime

from ..config import Settings
from ..errors import ConfigurationError
from . import argtypes
from .stores import open_store


def register(commands) -> None:
    parser = commands.add_parser("experiments", help="A/B tests and interleaving experiments")
    sub = parser.add_subparsers(
        dest="experiments_command", required=True, parser_class=type(parser)
    )
    create = sub.add_parser("create", help="define an experiment (the first --arm is the control)")
    create.add_argument("name", help="lower-case letters, digits, '-' and '_'")
    create.add_argument("--kind", choices=["ab", "interleaving"], default="ab")
    create.add_argument("--surface", required=True, help="where it runs, e.g. home")
    create.add_argument(
        "--arm",
        action="append",
        required=True,
        metavar="NAME=STRATEGY[@VERSION][:WEIGHT]",
        help="an arm, e.g. control=als or bigger=als@7:2 (repeat; weight 1 by default)",
    )
    create.add_argument("--start", type=argtypes.aware_datetime, help="default: now")
    create.add_argument("--stop", type=argtypes.aware_datetime, help="default: until stopped")
    create.set_defaults(handler=run_create)
    listing = sub.add_parser("list", help="every experiment, newest first")
    listing.add_argument("--running", action="store_true", help="only those running now")
    listing.set_defaults(handler=run_list)
    stop = sub.add_parser("stop", help="stop a running experiment now")
    stop.add_argument("name")
    stop.set_defaults(handler=run_stop)
    report = sub.add_parser("report", help="CTR per arm, lift and its CI, SRM check")
    report.add_argument("name")
    report.add_argument(
        "--cuped", action="store_true", help="reduce variance with each user's pre-period value"
    )
    report.add_argument("--alpha", type=float, default=0.05, help="1 - confidence (0.05)")
    report.set_defaults(handler=run_report)


def _store(settings: Settings):
    from ..experiments.store import ExperimentStore

    return open_store(settings, ExperimentStore, "experiment")


def _when(at: datetime | None) -> str:
    return f"{at.astimezone(UTC):%Y-%m-%d %H:%M} UTC" if at else "until stopped"


def _describe(experiment) -> str:
    arms = " ".join(a.spec() for a in experiment.arms)
    return (
        f"{experiment.name}  {experiment.kind}  surface {experiment.surface}  "
        f"{_when(experiment.starts_at)} -> {_when(experiment.stops_at)}  arms {arms}"
    )


def run_create(args, settings: Settings) -> int:
    from ..experiments import Experiment, parse_arm

    arms = tuple(parse_arm(text) for text in args.arm)
    experiment = Experiment(
        name=args.name,
        kind=args.kind,
        surface=args.surface,
        arms=arms,
        starts_at=args.start or datetime.now(UTC),
        stops_at=args.stop,
    )
    with _store(settings) as store:
        store.create(experiment)
    shares = ", ".join(f"{n} {w:.0%}" for n, w in experiment.weights().items())
    print(f"experiment {experiment.name} created: {experiment.kind} on {experiment.surface}")
    print(f"  control {experiment.control.name}; users split {shares}")
    return 0


def run_list(args, settings: Settings) -> int:
    with _store(settings) as store:
        experiments = store.all(running_at=datetime.now(UTC) if args.running else None)
    if not experiments:
        print(
            "no experiments" + (" running" if args.running else "") + " yet: "
            "marquee experiments create NAME --surface home --arm control=als --arm ..."
        )
    for experiment in experiments:
        print(_describe(experiment))
    return 0


def run_stop(args, settings: Settings) -> int:
    with _store(settings) as store:
        experiment = store.stop(args.name)
    print(f"experiment {experiment.name} stopped at {_when(experiment.stops_at)}")
    return 0


def run_report(args, settings: Settings) -> int:
    if not 0 < args.alpha < 1:
        raise ConfigurationError("--alpha must be between 0 and 1, e.g. 0.05")
    with _store(settings) as store:
        experiment = store.get(args.name)
        print(_describe(experiment))
        if experiment.kind == "interleaving":
            _print_interleaving(experiment, store.interleaving_credits(args.name), args.alpha)
        else:
            _print_ab(experiment, store.user_counts(args.name), args.alpha, args.cuped)
    return 0


def _pct(value: float) -> str:
    return f"{value:.3%}"


def _print_ab(experiment, rows, alpha: float, cuped: bool) -> None:
    from ..experiments.statistics import analyse

    if not rows:
        print(f"no per-user counts for {experiment.name} yet (experiment_user_counts is empty)")
        return
    report = analyse(rows, experiment.weights(), alpha=alpha, cuped=cuped)
    level = f"{1 - alpha:.0%} CI"
    print(f"{'arm':<16} {'users':>9} {'impressions':>12} {'clicks':>9} {'CTR':>8}  {level}")
    for arm in report.arms:
        ci = f"[{_pct(arm.ci[0])}, {_pct(arm.ci[1])}]" if arm.variance == arm.variance else "n/a"
        print(
            f"{arm.arm:<16} {arm.users:>9,} {arm.impressions:>12,} {arm.clicks:>9,} "
            f"{_pct(arm.ctr):>8}  {ci}"
        )
    for c in report.comparisons:
        verdict = "significant" if c.significant(alpha) else "not significant"
        print(
            f"{c.arm} vs {c.control}: lift {c.lift:+.2%} [{c.lift_ci[0]:+.2%}, {c.lift_ci[1]:+.2%}], "
            f"difference {c.difference * 100:+.3f} pp "
            f"[{c.difference_ci[0] * 100:+.3f}, {c.difference_ci[1] * 100:+.3f}], "
            f"p={c.p_value:.3g} ({verdict} at alpha {alpha:g})"
        )
    if cuped:
        print("CUPED: adjusted with each user's pre-period value (0 where none)")
    srm = report.sample_ratio
    split = " / ".join(f"{n} {srm.observed[n]:,}" for n in srm.observed)
    expected = " / ".join(f"{n} {srm.expected[n]:,.0f}" for n in srm.expected)
    if srm.mismatch:
        print(
            f"SAMPLE RATIO MISMATCH: users {split} against {expected} expected "
            f"(chi2 {srm.chi2:.1f}, p={srm.p_value:.2g}): the split is broken, so the "
            "comparison above is not trustworthy; find why arms lose or gain users first"
        )
    else:
        print(
            f"sample ratio ok: users {split} against {expected} (chi2 {srm.chi2:.2f}, "
            f"p={srm.p_value:.2g})"
        )


def _print_interleaving(experiment, credits, alpha: float) -> None:
    from ..experiments.interleaving import preference

    first, second = (a.name for a in experiment.arms)
    if not credits:
        print(
            f"no interleaved lists for {experiment.name} yet "
            "(experiment_interleaving_credits is empty)"
        )
        return
    p = preference(credits, alpha=alpha)
    level = f"{1 - alpha:.0%}"
    print(
        f"{p.sessions:,} interleaved lists: {first} won {p.wins[0]:,}, {second} won "
        f"{p.wins[1]:,}, {p.ties:,} ties (no click, or as many for each)"
    )
    preferred = second if p.delta > 0 else first
    print(
        f"preference for {second}: delta {p.delta:+.4f} [{p.delta_ci[0]:+.4f}, "
        f"{p.delta_ci[1]:+.4f}] ({level} CI); {second} wins {p.win_share:.1%} of decided lists "
        f"[{p.win_share_ci[0]:.1%}, {p.win_share_ci[1]:.1%}], sign test p={p.p_value:.3g}"
    )
    if p.p_value < alpha:
        print(f"verdict: {preferred} is preferred (alpha {alpha:g})")
    else:
        print(f"verdict: no preference detected (alpha {alpha:g})")
