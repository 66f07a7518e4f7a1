"""Experiments in Postgres (migration 0011): definitions, arms, and the counts reports read."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Engine, text
from sqlalchemy.exc import IntegrityError

from ..errors import ConfigurationError
from .model import Arm, Experiment
from .statistics import UserCounts

#: A report's input: one row per user of an experiment. ``experiment_user_counts`` may be a
#: table or a view (see the migration); only these columns are read.
USER_COUNTS_SQL = (
    "SELECT user_id, arm, impressions, clicks, pre_period FROM experiment_user_counts"
    " WHERE experiment = :name"
)
#: An interleaving report's input: clicks credited to each ranker per interleaved list.
CREDITS_SQL = (
    "SELECT c.impression_id, a.position, c.clicks FROM experiment_interleaving_credits c"
    " JOIN experiment_arms a ON a.experiment = c.experiment AND a.arm = c.arm"
    " WHERE c.experiment = :name ORDER BY c.impression_id"
)
_EXPERIMENTS = "SELECT name, kind, surface, starts_at, stops_at FROM experiments"
_ARMS = (
    "SELECT experiment, arm, strategy, model_version, weight FROM experiment_arms"
    " WHERE experiment = ANY(:names) ORDER BY experiment, position"
)


class ExperimentStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def create(self, experiment: Experiment) -> Experiment:
        try:
            with self.engine.begin() as conn:
                conn.execute(
                    text(
                        "INSERT INTO experiments (name, kind, surface, starts_at, stops_at)"
                        " VALUES (:name, :kind, :surface, :starts_at, :stops_at)"
                    ),
                    {
                        "name": experiment.name,
                        "kind": experiment.kind,
                        "surface": experiment.surface,
                        "starts_at": experiment.starts_at,
                        "stops_at": experiment.stops_at,
                    },
                )
                conn.execute(
                    text(
                        "INSERT INTO experiment_arms"
                        " (experiment, arm, position, strategy, model_version, weight)"
                        " VALUES (:experiment, :arm, :position, :strategy, :version, :weight)"
                    ),
                    [
                        {
                            "experiment": experiment.name,
                            "arm": arm.name,
                            "position": position,
                            "strategy": arm.strategy,
                            "version": arm.model_version,
                            "weight": arm.weight,
                        }
                        for position, arm in enumerate(experiment.arms)
                    ],
                )
        except IntegrityError:
            raise ConfigurationError(
                f"an experiment named {experiment.name!r} exists already (stopped ones keep "
                "their name, so their users' buckets are never reused): choose another name"
            ) from None
        return experiment

    def all(self, *, running_at: datetime | None = None) -> list[Experiment]:
        """Every experiment, newest start first; only those running then with ``running_at``."""
        where = (
            " WHERE starts_at <= :at AND (stops_at IS NULL OR stops_at > :at)"
            if running_at is not None
            else ""
        )
        with self.engine.connect() as conn:
            rows = conn.execute(
                text(f"{_EXPERIMENTS}{where} ORDER BY starts_at DESC, name"), {"at": running_at}
            ).all()
            arms = conn.execute(text(_ARMS), {"names": [r.name for r in rows]}).all()
        by_name: dict[str, list[Arm]] = {r.name: [] for r in rows}
        for a in arms:
            by_name[a.experiment].append(Arm(a.arm, a.strategy, a.model_version, a.weight))
        return [
            Experiment(r.name, r.kind, r.surface, tuple(by_name[r.name]), r.starts_at, r.stops_at)
            for r in rows
        ]

    def get(self, name: str) -> Experiment:
        for experiment in self.all():
            if experiment.name == name:
                return experiment
        raise ConfigurationError(f"no experiment named {name!r} (see `marquee experiments list`)")

    def stop(self, name: str) -> Experiment:
        """Stop a running experiment now; stopping a stopped one is an error that says when."""
        experiment = self.get(name)
        with self.engine.begin() as conn:
            now = conn.execute(text("SELECT now()")).scalar_one()
            if experiment.stops_at is not None and experiment.stops_at <= now:
                raise ConfigurationError(
                    f"experiment {name} stopped already, at {experiment.stops_at:%Y-%m-%d %H:%M %Z}"
                )
            if experiment.starts_at >= now:
                raise ConfigurationError(
                    f"experiment {name} starts at {experiment.starts_at:%Y-%m-%d %H:%M %Z}: "
                    "it has not run, there is nothing to stop"
                )
            conn.execute(
                text("UPDATE experiments SET stops_at = :now WHERE name = :name"),
                {"now": now, "name": name},
            )
        return self.get(name)

    def user_counts(self, name: str) -> list[UserCounts]:
        with self.engine.connect() as conn:
            rows = conn.execute(text(USER_COUNTS_SQL), {"name": name}).all()
        return [
            UserCounts(r.user_id, r.arm, int(r.impressions), int(r.clicks), r.pre_period)
            for r in rows
        ]

    def interleaving_credits(self, name: str) -> list[tuple[int, int]]:
        """(clicks credited to the first arm, to the second) per interleaved list."""
        credits: dict[str, list[int]] = {}
        with self.engine.connect() as conn:
            for row in conn.execute(text(CREDITS_SQL), {"name": name}):
                credits.setdefault(row.impression_id, [0, 0])[row.position] += int(row.clicks)
        return [(a, b) for a, b in credits.values()]
