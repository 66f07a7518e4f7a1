"""`marquee experiments create|list|stop|report` against the real Postgres."""

from __future__ import annotations

import numpy as np
from sqlalchemy import text

from shared.experiments import arm_for
from shared.experiments.simulation import users
from shared.experiments.statistics import UserCounts, analyse
from shared.experiments.store import ExperimentStore
from tests.integration.stack_helpers import marquee


def insert_counts(engine, experiment: str, rows: list[UserCounts]) -> None:
    """The feedback rows behind ``rows`` (migration 0013's view reads them): per user one
    list of ``impressions`` slots, the first ``clicks`` of them clicked, and ``pre_period``
    clicks a day before the experiment started."""
    users = [r.user_id for r in rows]
    bind = {
        "experiment": experiment,
        "users": users,
        "arms": [r.arm for r in rows],
        "slots": [r.impressions for r in rows],
        "clicks": [r.clicks for r in rows],
        "pre": [int(r.pre_period or 0) for r in rows],
    }
    unnest = (
        "unnest(CAST(:users AS text[]), CAST(:arms AS text[]), CAST(:slots AS int[]),"
        " CAST(:clicks AS int[]), CAST(:pre AS int[])) AS t(u, arm, slots, clicks, pre)"
    )
    with engine.begin() as conn:
        for statement in (
            "INSERT INTO feedback_impressions (impression_id, user_id, served_at, strategy,"
            " surface, experiment, arm, slots) SELECT :experiment || '/' || u, u, now(), 'als',"
            f" 'home', :experiment, arm, slots FROM {unnest}",
            "INSERT INTO feedback_slots (impression_id, position, item_id, score)"
            " SELECT :experiment || '/' || u, p, 'item-' || p, 0"
            f" FROM {unnest}, generate_series(1, slots) AS p",
            "INSERT INTO feedback_interactions (event_source, event_id, impression_id, user_id,"
            " item_id, action, occurred_at) SELECT 'urn:test', :experiment || '/' || u || '/' || p,"
            " :experiment || '/' || u, u, 'item-' || p, 'click', now()"
            f" FROM {unnest}, generate_series(1, clicks) AS p",
            "INSERT INTO feedback_interactions (event_source, event_id, user_id, item_id, action,"
            " occurred_at) SELECT 'urn:test:pre', :experiment || '/' || u || '/' || p, u,"
            " 'old-' || p, 'click', e.starts_at - interval '1 day'"
            f" FROM {unnest}, generate_series(1, pre) AS p, experiments e"
            " WHERE e.name = :experiment",
        ):
            conn.execute(text(statement), bind)


def test_create_list_report_stop(settings, engine):
    created = marquee(
        settings,
        *("experiments", "create", "home-als64", "--surface", "home"),
        *("--arm", "control=als@8", "--arm", "bigger=als@64:3"),
    )
    assert created.returncode == 0, created.stderr
    assert "control control; users split control 25%, bigger 75%" in created.stdout
    again = marquee(
        settings, "experiments", "create", "home-als64", "--surface", "home",
        "--arm", "a=als", "--arm", "b=als",
    )  # fmt: skip
    assert again.returncode == 2 and "exists already" in again.stderr
    lonely = marquee(settings, "experiments", "create", "x", "--surface", "home", "--arm", "a=als")
    assert lonely.returncode == 2 and "at least two arms" in lonely.stderr

    listed = marquee(settings, "experiments", "list", "--running")
    assert listed.returncode == 0 and listed.stdout.startswith("home-als64  ab  surface home")
    assert "arms control=als@8:1 bigger=als@64:3" in listed.stdout

    # Users bucketed as a serving worker would, traffic as the feedback consumer would count it.
    experiment = ExperimentStore(engine).get("home-als64")
    rng = np.random.default_rng(19)
    n, c, pre = users(rng, 8_000, pre_period=50)
    treated = users(np.random.default_rng(20), 8_000, lift=0.15, pre_period=50)
    rows = []
    for k in range(8_000):
        arm = arm_for(experiment, f"user-{k}").name
        source = (n, c, pre) if arm == "control" else treated
        rows.append(
            UserCounts(f"user-{k}", arm, *(int(v[k]) for v in source[:2]), float(int(source[2][k])))
        )
    insert_counts(engine, "home-als64", rows)
    assert sorted(ExperimentStore(engine).user_counts("home-als64"), key=lambda r: r.user_id) == (
        sorted(rows, key=lambda r: r.user_id)
    )

    report = marquee(settings, "experiments", "report", "home-als64")
    assert report.returncode == 0, report.stderr
    expected = analyse(rows, experiment.weights())
    lines = report.stdout.splitlines()
    control = next(line for line in lines if line.startswith("control "))
    assert f"{expected.arms[0].users:,}" in control and f"{expected.arms[0].ctr:.3%}" in control
    (lift,) = expected.comparisons
    assert f"bigger vs control: lift {lift.lift:+.2%} [{lift.lift_ci[0]:+.2%}" in report.stdout
    assert "sample ratio ok" in report.stdout
    cuped = marquee(settings, "experiments", "report", "home-als64", "--cuped")
    assert cuped.returncode == 0 and "CUPED" in cuped.stdout

    stopped = marquee(settings, "experiments", "stop", "home-als64")
    assert stopped.returncode == 0 and "stopped at" in stopped.stdout
    assert marquee(settings, "experiments", "list", "--running").stdout.startswith("no experiments")
    twice = marquee(settings, "experiments", "stop", "home-als64")
    assert twice.returncode == 2 and "stopped already" in twice.stderr
    missing = marquee(settings, "experiments", "report", "nope")
    assert missing.returncode == 2 and "no experiment named 'nope'" in missing.stderr


def test_report_flags_a_broken_split(settings, engine):
    assert marquee(
        settings, "experiments", "create", "broken", "--surface", "home",
        "--arm", "a=als", "--arm", "b=popularity",
    ).returncode == 0  # fmt: skip
    rows = [UserCounts(f"u{k}", "a" if k < 5_200 else "b", 5, k % 2, 0.0) for k in range(10_000)]
    insert_counts(engine, "broken", rows)
    report = marquee(settings, "experiments", "report", "broken")
    assert report.returncode == 0, report.stderr
    assert "SAMPLE RATIO MISMATCH: users a 5,200 / b 4,800 against a 5,000 / b 5,000" in (
        report.stdout
    )


def test_interleaving_report(settings, engine):
    assert marquee(
        settings, "experiments", "create", "rank-64", "--kind", "interleaving",
        "--surface", "home", "--arm", "als8=als@8", "--arm", "als64=als@64",
    ).returncode == 0  # fmt: skip
    # Interleaved lists as the feedback service keeps them: list k shows one slot per ranker
    # (als8 at position 1, als64 at 2); ``clicked`` names the rankers whose slot was clicked.
    clicked = [("als64",)] * 200 + [()] * 100 + [("als8",)] * 50
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO feedback_impressions (impression_id, user_id, served_at, strategy,"
                " surface, experiment, slots) VALUES (:i, 'u', now(), 'interleaved', 'home',"
                " 'rank-64', 2)"
            ),
            [{"i": f"i{k}"} for k in range(len(clicked))],
        )
        conn.execute(
            text(
                "INSERT INTO feedback_slots (impression_id, position, item_id, score, arm)"
                " VALUES (:i, :p, :arm, 0, :arm)"
            ),
            [
                {"i": f"i{k}", "p": p, "arm": arm}
                for k in range(len(clicked))
                for p, arm in ((1, "als8"), (2, "als64"))
            ],
        )
        conn.execute(
            text(
                "INSERT INTO feedback_interactions (event_source, event_id, impression_id,"
                " user_id, item_id, action, occurred_at) VALUES ('urn:test', :e, :i, 'u', :arm,"
                " 'click', now())"
            ),
            [
                {"e": f"c{k}-{arm}", "i": f"i{k}", "arm": arm}
                for k, arms in enumerate(clicked)
                for arm in arms
            ],
        )
    assert sorted(ExperimentStore(engine).interleaving_credits("rank-64")) == sorted(
        [(0, 1)] * 200 + [(0, 0)] * 100 + [(1, 0)] * 50
    )
    report = marquee(settings, "experiments", "report", "rank-64")
    assert report.returncode == 0, report.stderr
    assert "350 interleaved lists: als8 won 50, als64 won 200, 100 ties" in report.stdout
    assert "verdict: als64 is preferred" in report.stdout
    bad = marquee(
        settings, "experiments", "create", "three", "--kind", "interleaving", "--surface", "home",
        "--arm", "a=als", "--arm", "b=als", "--arm", "c=als",
    )  # fmt: skip
    assert bad.returncode == 2 and "exactly two rankers" in bad.stderr
