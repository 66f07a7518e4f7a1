"""Team-draft interleaving (Radlinski, Kurup and Joachims, CIKM 2008), pure functions.

Two rankers take turns, like captains picking teams: whoever has contributed fewer items
picks next (a coin decides a tie), and picks its best item not yet in the list. Each slot
remembers its team, a click credits that team, and a session is won by the team with more
clicks. One user compares both rankers on the same page, so the noise between users that an
A/B test must average away cancels, and far fewer sessions reach a verdict.

The coin is seeded per request (experiment + request id, SHA-256), so the same request
interleaves the same way in any process, and the record of teams can be rebuilt.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats


@dataclass(frozen=True)
class Interleaved:
    items: list[Hashable]
    #: teams[k] is the ranker (0 or 1) that contributed items[k].
    teams: list[int]

    def credit(self, clicked: Iterable[Hashable]) -> tuple[int, int]:
        """Clicks on this list credited to ranker 0 and ranker 1 (clicks off the list: none)."""
        team_of = dict(zip(self.items, self.teams, strict=True))
        credit = [0, 0]
        for item in clicked:
            if item in team_of:
                credit[team_of[item]] += 1
        return credit[0], credit[1]


def request_rng(experiment: str, request_id: str) -> random.Random:
    digest = hashlib.sha256(f"{experiment}\x1f{request_id}".encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


def team_draft(
    first: Sequence[Hashable], second: Sequence[Hashable], length: int, rng: random.Random
) -> Interleaved:
    """Interleave two rankings into at most ``length`` distinct items."""
    rankings = (first, second)
    cursor = [0, 0]
    picked = [0, 0]
    items: list[Hashable] = []
    teams: list[int] = []
    seen: set[Hashable] = set()

    def next_of(team: int) -> Hashable | None:
        ranking = rankings[team]
        while cursor[team] < len(ranking) and ranking[cursor[team]] in seen:
            cursor[team] += 1
        return ranking[cursor[team]] if cursor[team] < len(ranking) else None

    while len(items) < length:
        if picked[0] != picked[1]:
            team = 0 if picked[0] < picked[1] else 1
        else:
            team = rng.randrange(2)
        item = next_of(team)
        if item is None:  # this ranker has nothing left: the other one fills the list
            team = 1 - team
            item = next_of(team)
            if item is None:
                break
        items.append(item)
        teams.append(team)
        seen.add(item)
        picked[team] += 1
    return Interleaved(items, teams)


@dataclass(frozen=True)
class Preference:
    """Which ranker the sessions preferred; ranker 1 is the challenger."""

    sessions: int
    wins: tuple[int, int]  # sessions won by ranker 0, by ranker 1
    ties: int  # including sessions without a click
    #: (wins_1 - wins_0) / sessions, in [-1, 1]; > 0 means ranker 1 is preferred.
    delta: float
    delta_ci: tuple[float, float]
    #: wins_1 / (wins_0 + wins_1), with its exact (Clopper-Pearson) interval.
    win_share: float
    win_share_ci: tuple[float, float]
    #: two-sided binomial sign test over the decided sessions.
    p_value: float


def preference(credits: Iterable[tuple[int, int]], *, alpha: float = 0.05) -> Preference:
    """The verdict over sessions, each given as (clicks credited to ranker 0, to ranker 1)."""
    pairs = np.array(list(credits), dtype=float).reshape(-1, 2)
    outcome = np.sign(pairs[:, 1] - pairs[:, 0])
    sessions = len(outcome)
    wins = (int((outcome < 0).sum()), int((outcome > 0).sum()))
    decided = wins[0] + wins[1]
    z = float(stats.norm.isf(alpha / 2))
    if sessions >= 2:
        delta = float(outcome.mean())
        se = float(outcome.std(ddof=1) / np.sqrt(sessions))
        delta_ci = (delta - z * se, delta + z * se)
    else:
        delta, delta_ci = float("nan"), (float("nan"), float("nan"))
    if decided:
        test = stats.binomtest(wins[1], decided, 0.5)
        ci = test.proportion_ci(1 - alpha, method="exact")
        share, share_ci, p_value = wins[1] / decided, (ci.low, ci.high), float(test.pvalue)
    else:
        share, share_ci, p_value = float("nan"), (float("nan"), float("nan")), 1.0
    return Preference(
        sessions=sessions,
        wins=wins,
        ties=sessions - decided,
        delta=delta,
        delta_ci=delta_ci,
        win_share=share,
        win_share_ci=(float(share_ci[0]), float(share_ci[1])),
        p_value=p_value,
    )
