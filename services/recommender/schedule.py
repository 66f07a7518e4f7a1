"""When a worker should retrain on its own (pure: the caller supplies what it observed,
or a store to observe in :func:`due_now`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class RetrainPolicy:
    #: Retrain when the newest version is this old (seconds); 0 never.
    every_seconds: float
    #: Retrain when this many interactions arrived since the newest version; 0 never.
    after_events: int
    #: The first model waits for this many interactions.
    min_events: int


def retrain_reason(
    policy: RetrainPolicy,
    *,
    interactions: int,
    last_trained_on: int | None,
    last_age_seconds: float | None,
) -> str | None:
    """Why a retrain is due now, or ``None``. "Newest version" counts rejected ones too, so
    a model that failed the gate is not retried until new data or time makes it worth it."""
    if last_trained_on is None or last_age_seconds is None:
        if interactions >= policy.min_events:
            return f"no model yet and {interactions} interactions stored"
        return None
    new = interactions - last_trained_on
    if policy.after_events and new >= policy.after_events:
        return f"{new} new interactions since the last version"
    if policy.every_seconds and last_age_seconds >= policy.every_seconds and new > 0:
        return f"last version is {last_age_seconds:.0f} s old and {new} interactions are new"
    return None


class TrainingState(Protocol):
    def training_state(self) -> tuple[int, int | None, float | None]: ...


def due_now(policy: RetrainPolicy, store: TrainingState) -> str | None:
    """:func:`retrain_reason` for what ``store`` holds now (it reads the store: blocking)."""
    interactions, trained_on, age = store.training_state()
    return retrain_reason(
        policy, interactions=interactions, last_trained_on=trained_on, last_age_seconds=age
    )
