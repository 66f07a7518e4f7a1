"""What the API serves: the immutable snapshot, and the pure functions that shape the
collector's state into the page's JSON."""

from __future__ import annotations

import json
from collections import defaultdict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .kafka_source import GroupInfo
from .lag import Evaluation, LagTime, Observation, Status
from .stats import generation_numbers, summary

#: A group's status is its worst partition's; UNKNOWN only when nothing is known.
SEVERITY = {
    Status.UNKNOWN: 0,
    Status.OK: 1,
    Status.WARN: 2,
    Status.REWIND: 3,
    Status.STALL: 4,
    Status.STOP: 5,
}


def worst(statuses) -> Status:
    return max(statuses, key=SEVERITY.__getitem__, default=Status.UNKNOWN)


@dataclass
class PartitionLag:
    """What the collector remembers about one group on one partition."""

    observations: deque[Observation]
    #: (time, lag messages, lag seconds) per sample, for the charts.
    history: deque[tuple[float, int | None, float | None]]
    evaluation: Evaluation | None = None
    seconds: LagTime | None = None


@dataclass
class Snapshot:
    """What the API serves: built once per tick, never mutated afterwards."""

    state: dict[str, Any]
    body: bytes
    #: Per-partition lag history, serialised on the first request that asks for it.
    lag_detail: Callable[[], dict[str, Any]]
    _lag_body: bytes | None = field(default=None, repr=False)

    def lag_body(self) -> bytes:
        if self._lag_body is None:
            self._lag_body = dumps(self.lag_detail())
        return self._lag_body


def dumps(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), allow_nan=False, default=str).encode()


def rounded(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(value, digits)


def lag_groups(
    lags: dict[tuple[str, str, int], PartitionLag],
    group_info: dict[str, GroupInfo],
    base_of: dict[str, str],
) -> list[dict[str, Any]]:
    """Each group's topics and partitions as the page shows them; a group or topic has the
    status of its worst partition."""
    by_group: dict[str, dict[str, list[tuple[int, PartitionLag]]]] = defaultdict(
        lambda: defaultdict(list)
    )
    for (group, topic, p), lag in sorted(lags.items()):
        by_group[group][topic].append((p, lag))
    groups = []
    for group, topics in by_group.items():
        info = group_info.get(group)
        topic_rows = []
        for topic, parts in topics.items():
            rows = [partition_row(p, lag) for p, lag in parts]
            known = [r["lag"] for r in rows if r["lag"] is not None]
            seconds = [r["lag_seconds"] for r in rows if r["lag_seconds"] is not None]
            topic_rows.append(
                {
                    "topic": base_of[topic],
                    "status": worst(Status(r["status"]) for r in rows).value,
                    "lag": sum(known) if known else None,
                    "lag_seconds": max(seconds) if seconds else None,
                    "series": summed_series([lag.history for _, lag in parts]),
                    "partitions": rows,
                }
            )
        groups.append(
            {
                "group": group,
                "state": info.state if info else "Unknown",
                "members": info.members if info else 0,
                "status": worst(Status(t["status"]) for t in topic_rows).value,
                "topics": topic_rows,
            }
        )
    return groups


def generator_part(live: dict[str, Any], db: dict[str, Any] | None) -> dict[str, Any]:
    """Heartbeat counters (queue depth, batch size) merged with what Postgres holds."""
    part: dict[str, Any] = {
        "instances": [],
        "queue_depth": None,
        "batch_size": None,
        "series": [],
        **live,
        "totals": {},
        "percentiles": None,
        "latest": [],
    }
    if db is None:
        return part
    numbers = [generation_numbers(tokens, timings) for tokens, timings in db["recent"]]
    part["percentiles"] = {
        name: summary([n[key] for n in numbers if n[key] is not None])
        for name, key in (
            ("time_to_first_token_seconds", "ttft_seconds"),
            ("tokens_per_second", "tokens_per_second"),
            ("latency_seconds", "latency_seconds"),
        )
    }
    part["totals"] = db["totals"]
    part["latest"] = [
        {**piece, **generation_numbers(piece["completion_tokens"], piece["timings"])}
        for piece in db["latest"]
    ]
    return part


def with_quality(version: dict[str, Any]) -> dict[str, Any]:
    """A version's held-out P@10 / NDCG@10 next to popularity's (what ``marquee train``
    stores under ``metrics.holdout``)."""
    holdout = (version.get("metrics") or {}).get("holdout") or {}
    served = holdout.get("served") or holdout.get("als") or {}
    popular = holdout.get("popularity") or {}
    quality = {}
    for metric in ("precision@10", "ndcg@10"):
        value, base = served.get(metric), popular.get(metric)
        quality[metric] = {
            "model": value,
            "popularity": base,
            "ratio": rounded(value / base) if value is not None and base else None,
        }
    return {k: v for k, v in version.items() if k != "metrics"} | {"quality": quality}


def partition_row(partition: int, lag: PartitionLag) -> dict[str, Any]:
    evaluation, seconds = lag.evaluation, lag.seconds
    newest = lag.observations[-1] if lag.observations else None
    return {
        "partition": partition,
        "committed": newest.committed if newest else None,
        "end": newest.end if newest else None,
        "lag": evaluation.lag if evaluation else None,
        "lag_seconds": rounded(seconds.seconds, 2) if seconds else None,
        "lag_seconds_lower_bound": bool(seconds and seconds.lower_bound),
        "status": (evaluation.status if evaluation else Status.UNKNOWN).value,
        "complete": bool(evaluation and evaluation.complete),
        "reason": evaluation.reason if evaluation else "no committed offset",
    }


def summed_series(histories) -> list[list[float | int | None]]:
    """Lag of a group on a topic over time: messages summed, seconds maxed over partitions."""
    points: dict[float, list] = {}
    for history in histories:
        for at, messages, seconds in history:
            point = points.setdefault(at, [0, None, False])
            if messages is not None:
                point[0] += messages
                point[2] = True
            if seconds is not None:
                point[1] = seconds if point[1] is None else max(point[1], seconds)
    return [
        [rounded(at, 1), m if known else None, rounded(s, 2)]
        for at, (m, s, known) in sorted(points.items())
    ]


def lag_detail(lags) -> dict[str, Any]:
    groups: dict[str, dict[str, list]] = defaultdict(lambda: defaultdict(list))
    for (group, topic, p), (evaluation, seconds, history) in sorted(lags.items()):
        groups[group][topic].append(
            {
                "partition": p,
                "status": (evaluation.status if evaluation else Status.UNKNOWN).value,
                "reason": evaluation.reason if evaluation else "no committed offset",
                "lag": evaluation.lag if evaluation else None,
                "lag_seconds": rounded(seconds.seconds, 2) if seconds else None,
                "history": [[rounded(at, 1), m, rounded(s, 2)] for at, m, s in history],
            }
        )
    return {"groups": {g: dict(t) for g, t in groups.items()}}
