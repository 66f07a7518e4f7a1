"""Team-draft interleaving: known cases, fairness of the draft, and a better ranker found."""

from __future__ import annotations

import random

import numpy as np
import pytest

from shared.experiments.interleaving import preference, request_rng, team_draft


class Coin:
    """An rng whose coin always lands on ``side``."""

    def __init__(self, side: int) -> None:
        self.side = side

    def randrange(self, _n: int) -> int:
        return self.side


def test_known_draft_and_its_credit():
    mixed = team_draft([1, 2, 3], [2, 3, 4], 4, Coin(0))
    assert mixed.items == [1, 2, 3, 4]
    assert mixed.teams == [0, 1, 0, 1]
    assert mixed.credit([2, 4]) == (0, 2)
    assert mixed.credit([3]) == (1, 0)
    assert mixed.credit([99]) == (0, 0)  # not on the list: nobody's
    other = team_draft([1, 2, 3], [2, 3, 4], 4, Coin(1))
    # ranker 0 has nothing new left for the last slot, so ranker 1 fills it
    assert other.items == [2, 1, 3, 4] and other.teams == [1, 0, 1, 1]


def test_identical_rankings_give_the_same_list():
    mixed = team_draft([5, 6, 7, 8], [5, 6, 7, 8], 4, random.Random(1))
    assert mixed.items == [5, 6, 7, 8]
    assert sorted(mixed.teams) == [0, 0, 1, 1]


def test_a_short_ranking_leaves_the_rest_to_the_other():
    mixed = team_draft([1], [2, 3, 4], 4, Coin(0))
    assert mixed.items == [1, 2, 3, 4] and mixed.teams == [0, 1, 1, 1]
    assert team_draft([], [], 5, Coin(0)).items == []
    assert len(team_draft([1, 2], [2, 1], 10, Coin(1)).items) == 2


def test_teams_stay_balanced_and_items_distinct():
    rng = random.Random(5)
    for _ in range(200):
        a, b = rng.sample(range(30), 20), rng.sample(range(30), 20)
        mixed = team_draft(a, b, 10, rng)
        assert len(set(mixed.items)) == len(mixed.items) == 10
        assert abs(mixed.teams.count(0) - mixed.teams.count(1)) <= 1
        # each team's items appear in that team's own order
        for team, ranking in ((0, a), (1, b)):
            mine = [i for i, t in zip(mixed.items, mixed.teams, strict=True) if t == team]
            assert mine == sorted(mine, key=ranking.index)


def test_the_draft_is_seeded_per_request():
    a, b = list(range(20)), list(range(19, -1, -1))
    one = team_draft(a, b, 10, request_rng("exp", "req-1"))
    assert one == team_draft(a, b, 10, request_rng("exp", "req-1"))
    teams = {tuple(team_draft(a, b, 10, request_rng("exp", f"req-{k}")).teams) for k in range(50)}
    assert len(teams) > 10


def simulated_sessions(sessions: int, seed: int, noise: tuple[float, float]):
    """Rankers see the true relevance through noise; a cascade-like position click model."""
    rng = np.random.default_rng(seed)
    credits = []
    for s in range(sessions):
        relevance = rng.beta(0.5, 4.0, 200)
        rankings = [list(np.argsort(-(relevance + rng.normal(0, sd, 200)))[:10]) for sd in noise]
        mixed = team_draft(*rankings, 10, request_rng("sim", str(s)))
        examine = 1.0 / (1.0 + np.arange(len(mixed.items)))
        clicked = [
            i for i, e in zip(mixed.items, examine, strict=True) if rng.random() < e * relevance[i]
        ]
        credits.append(mixed.credit(clicked))
    return credits


def test_a_better_ranker_is_preferred_with_an_interval_that_excludes_no_preference():
    verdict = preference(simulated_sessions(1_500, seed=19, noise=(0.4, 0.1)))
    assert verdict.sessions == 1_500 and sum(verdict.wins) + verdict.ties == 1_500
    assert verdict.delta > 0 and verdict.delta_ci[0] > 0
    assert verdict.win_share_ci[0] > 0.5 and verdict.p_value < 0.001


def test_preference_on_known_credits():
    verdict = preference([(0, 1), (0, 2), (1, 0), (0, 0), (2, 2)])
    assert verdict.wins == (1, 2) and verdict.ties == 2
    assert verdict.delta == pytest.approx(1 / 5)
    assert verdict.win_share == pytest.approx(2 / 3)
    assert verdict.p_value == pytest.approx(1.0)
    nothing = preference([])
    assert nothing.sessions == 0 and nothing.p_value == 1.0
