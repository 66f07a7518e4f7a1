"""Experiments in serving: the running experiment of a request's surface, the user's arm,
and the list that arm serves (both arms' lists team-drafted for an interleaving one).

The definitions come from ``marquee experiments`` (Postgres, :mod:`shared.experiments`),
read again on a timer; between reads every worker serves from the same copy. An arm is
served when the worker can serve it: its strategy is ``als`` or ``popularity`` and its
pinned model version, if any, is the one this worker serves. Otherwise the request is
served as if no experiment ran (and a warning says so once per arm): serving something
else under the arm's name would make the report compare the wrong thing, while the
missing users show up in its sample-ratio check.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy.exc import SQLAlchemyError

from shared.experiments import Arm, Experiment, arm_for
from shared.experiments.interleaving import request_rng, team_draft

from .persistence import HistoryStore, Pair
from .serving import Loaded, answer

log = logging.getLogger(__name__)

#: The strategies an arm can name.
STRATEGIES = ("als", "popularity")
#: What an interleaved list's impression calls its strategy.
INTERLEAVED = "interleaved"

#: ``running_at`` -> the experiments running then (``ExperimentStore.all``), run in a thread.
Load = Callable[..., list[Experiment]]


@dataclass(frozen=True)
class Served:
    items: list[Pair]
    strategy: str
    experiment: str | None = None
    arm: str | None = None
    #: Per slot, the arm that contributed it (interleaved lists only).
    teams: list[str] | None = None


@dataclass(frozen=True)
class ListRequest:
    user_id: str
    k: int
    exclude_seen: bool = True
    kind: str | None = None
    max_per_tag: int | None = None


class RunningExperiments:
    """The running experiments by surface, as last read."""

    def __init__(self, load: Load | None, clock: Callable[[], datetime] | None = None) -> None:
        self.load = load
        self.clock = clock or (lambda: datetime.now(UTC))
        self.by_surface: dict[str, Experiment] = {}
        self.warned: set[tuple[str, str]] = set()

    async def refresh(self) -> None:
        """Read them again; on a database error keep the last ones (the next tick retries)."""
        if self.load is None:
            return
        try:
            running = await asyncio.to_thread(self.load, running_at=self.clock())
        except SQLAlchemyError as exc:
            log.warning("experiments not refreshed, serving the last ones read: %s", exc)
            return
        by_surface: dict[str, Experiment] = {}
        for experiment in running:  # newest start first: it takes a contested surface
            by_surface.setdefault(experiment.surface, experiment)
        self.by_surface = by_surface

    def on(self, surface: str | None) -> Experiment | None:
        """The experiment running now on ``surface`` (stops are honoured between reads)."""
        experiment = self.by_surface.get(surface or "default")
        return experiment if experiment is not None and experiment.running(self.clock()) else None

    async def serve(
        self,
        loaded: Loaded,
        histories: HistoryStore,
        request: ListRequest,
        surface: str | None,
        impression_id: str,
    ) -> Served:
        """The list for ``request``: the user's arm's when an experiment runs on ``surface``
        (an interleaved one seeded by ``impression_id``), else the default one."""
        history = None
        if not loaded.recommender.has_factors(request.user_id):
            found = await asyncio.to_thread(histories.histories, [request.user_id])
            history = found[request.user_id]
        experiment = self.on(surface)
        if experiment is not None and experiment.kind == "interleaving":
            if all(self.servable(loaded, experiment, arm) for arm in experiment.arms):
                return interleaved(loaded, request, history, experiment, impression_id)
        elif experiment is not None:
            arm = arm_for(experiment, request.user_id)
            if self.servable(loaded, experiment, arm):
                items, strategy = ranked(loaded, request, arm.strategy, history)
                return Served(items, strategy, experiment.name, arm.name)
        return Served(*ranked(loaded, request, "als", history))

    def servable(self, loaded: Loaded, experiment: Experiment, arm: Arm) -> bool:
        if arm.strategy in STRATEGIES and arm.model_version in (None, loaded.version.id):
            return True
        if (experiment.name, arm.name) not in self.warned:
            self.warned.add((experiment.name, arm.name))
            log.warning(
                "experiment %s: arm %s is not served by this worker (strategies: %s; model "
                "version %s): its users get the default list, outside the experiment",
                experiment.name,
                arm.spec(),
                ", ".join(STRATEGIES),
                loaded.version.id,
            )
        return False


def ranked(
    loaded: Loaded, request: ListRequest, strategy: str, history: list[Pair] | None
) -> tuple[list[Pair], str]:
    """``strategy``'s list for the request, and the strategy that really produced it (an
    ``als`` list for a user without history is the popularity fallback)."""
    r = request
    if strategy == "als":
        return answer(
            loaded, r.user_id, r.k, r.exclude_seen, r.kind, history, max_per_tag=r.max_per_tag
        )
    rec = loaded.recommender
    seen: list[str] = []
    if r.exclude_seen:
        user = rec.users.get(r.user_id)
        row = rec.seen_row(user) if rec.has_factors(r.user_id) else rec.history_row(history or ())
        seen = [rec.items.external(i) for i in row.indices]
    cap = rec.shaping.max_per_tag if r.max_per_tag is None else r.max_per_tag
    return rec.popular(r.k, exclude=seen, kind=r.kind, max_per_tag=cap), "popularity"


def interleaved(
    loaded: Loaded,
    request: ListRequest,
    history: list[Pair] | None,
    experiment: Experiment,
    impression_id: str,
) -> Served:
    """Team-draft of the two arms' lists, its coin seeded by experiment and impression id."""
    lists = [ranked(loaded, request, arm.strategy, history)[0] for arm in experiment.arms]
    scores = [dict(items) for items in lists]
    mixed = team_draft(
        [item for item, _ in lists[0]],
        [item for item, _ in lists[1]],
        request.k,
        request_rng(experiment.name, impression_id),
    )
    return Served(
        [(item, scores[team][item]) for item, team in zip(mixed.items, mixed.teams, strict=True)],
        INTERLEAVED,
        experiment.name,
        teams=[experiment.arms[team].name for team in mixed.teams],
    )
