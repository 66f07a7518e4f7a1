"""Decoded events -> the rows the feedback tables keep (pure: no Kafka, no database)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from shared.events import ImpressionEvent, InteractionEvent

#: What can be attributed to an impression; views and shares are not counted here.
ATTRIBUTED_ACTIONS = frozenset({"click", "like", "dwell"})


@dataclass(frozen=True)
class ImpressionRow:
    impression_id: str
    user_id: str
    served_at: datetime
    strategy: str
    model_version: int | None
    surface: str
    experiment: str | None
    arm: str | None
    #: ``(position, item_id, score, arm)`` for every item shown; ``arm``: the ranker that
    #: contributed the slot to an interleaved list, else ``None``.
    slots: tuple[tuple[int, str, float, str | None], ...]


@dataclass(frozen=True)
class InteractionRow:
    event_source: str
    event_id: str
    impression_id: str | None
    user_id: str
    item_id: str
    action: str
    dwell_seconds: float | None
    occurred_at: datetime


def impression_row(event: ImpressionEvent) -> ImpressionRow:
    data = event.data
    return ImpressionRow(
        impression_id=data.impression_id,
        user_id=data.user_id,
        served_at=event.time,
        strategy=data.strategy,
        model_version=data.model_version,
        surface=data.surface,
        experiment=data.experiment,
        arm=data.arm,
        slots=tuple((item.position, item.item_id, item.score, item.arm) for item in data.items),
    )


def interaction_row(event: InteractionEvent) -> InteractionRow | None:
    """The row to keep, or ``None`` for an action that is never attributed."""
    data = event.data
    if data.action not in ATTRIBUTED_ACTIONS:
        return None
    return InteractionRow(
        event_source=event.source,
        event_id=event.id,
        impression_id=data.impression_id,
        user_id=data.user_id,
        item_id=data.item_id,
        action=data.action,
        dwell_seconds=data.dwell_seconds,
        occurred_at=event.time,
    )
