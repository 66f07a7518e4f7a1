"""When a worker should retrain on its own (pure: the caller supplies what it observed)."""

from __future__ import annotations

from dataclasses import dataclass


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
