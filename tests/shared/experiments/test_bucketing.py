"""Bucketing: the same user lands in the same arm in every process; weights are honoured."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from datetime import UTC, datetime

import numpy as np
import pytest
from scipy import stats

from shared.errors import ConfigurationError
from shared.experiments import Arm, Experiment, arm_for, bucket_of, parse_arm

START = datetime(2026, 1, 1, tzinfo=UTC)


def experiment(name="homepage-als64", weights=(1.0, 1.0)) -> Experiment:
    arms = tuple(Arm(f"arm{k}", "als", weight=w) for k, w in enumerate(weights))
    return Experiment(name, "ab", "home", arms, START)


ARMS_OF_TWO_PROCESSES = """
import json, sys
from datetime import UTC, datetime
from shared.experiments import Arm, Experiment, arm_for
exp = Experiment("homepage-als64", "ab", "home",
                 (Arm("arm0", "als", weight=1.0), Arm("arm1", "als", weight=3.0)),
                 datetime(2026, 1, 1, tzinfo=UTC))
print(json.dumps([arm_for(exp, f"u{k}").name for k in range(2000)]))
"""


def test_two_processes_with_different_hash_seeds_agree():
    def run(seed: str) -> list[str]:
        env = {**os.environ, "PYTHONHASHSEED": seed}
        out = subprocess.run(
            [sys.executable, "-c", ARMS_OF_TWO_PROCESSES],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        return json.loads(out.stdout)

    first, second = run("1"), run("2")
    here = [arm_for(experiment(weights=(1.0, 3.0)), f"u{k}").name for k in range(2000)]
    assert first == second == here
    assert set(here) == {"arm0", "arm1"}


def test_a_known_user_has_a_pinned_bucket():
    """A change of hash, key layout or scaling would silently reshuffle every running test."""
    assert bucket_of("homepage-als64", "u1") == 0.31880731892597164
    assert bucket_of("homepage-als64", "u2") == 0.4120949718920128


@pytest.mark.parametrize("weights", [(1.0, 1.0), (1.0, 3.0), (5.0, 3.0, 2.0)])
def test_weights_are_honoured_within_sampling_error(weights):
    exp = experiment(weights=weights)
    users = 60_000
    counts = Counter(arm_for(exp, f"user-{k}").name for k in range(users))
    observed = [counts[f"arm{k}"] for k in range(len(weights))]
    expected = users * np.array(weights) / sum(weights)
    assert stats.chisquare(observed, expected).pvalue > 0.001
    assert np.allclose(observed, expected, rtol=0.03)


def test_experiments_bucket_independently():
    a, b = experiment("first"), experiment("second")
    pairs = Counter((arm_for(a, f"u{k}").name, arm_for(b, f"u{k}").name) for k in range(20_000))
    assert all(4_600 < pairs[(x, y)] < 5_400 for x in ("arm0", "arm1") for y in ("arm0", "arm1"))


def test_arm_specs_parse_and_bad_ones_say_how():
    assert parse_arm("control=als") == Arm("control", "als", None, 1.0)
    assert parse_arm("big=als@7:2.5") == Arm("big", "als", 7, 2.5)
    assert parse_arm(parse_arm("big=als@7:2.5").spec()) == Arm("big", "als", 7, 2.5)
    with pytest.raises(ConfigurationError, match="NAME=STRATEGY"):
        parse_arm("Big als")
    with pytest.raises(ConfigurationError, match="positive"):
        experiment(weights=(1.0, 0.0))
    with pytest.raises(ConfigurationError, match="exactly two"):
        Experiment("x", "interleaving", "home", experiment(weights=(1, 1, 1)).arms, START)
    with pytest.raises(ConfigurationError, match="at least two"):
        Experiment("x", "ab", "home", (Arm("a", "als"),), START)


def test_running_honours_start_and_stop():
    exp = Experiment("x", "ab", "home", experiment().arms, START, datetime(2026, 2, 1, tzinfo=UTC))
    assert not exp.running(datetime(2025, 12, 31, tzinfo=UTC))
    assert exp.running(START)
    assert not exp.running(datetime(2026, 2, 1, tzinfo=UTC))
    with pytest.raises(ConfigurationError, match="after the start"):
        Experiment("x", "ab", "home", exp.arms, START, START)
