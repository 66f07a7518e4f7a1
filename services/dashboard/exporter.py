"""Prometheus view of the snapshot: lag, lag status, offsets, dead letters, heartbeats.

Gauges live in the service's injected registry (``/metrics``). Labels are bounded: groups
by ``MARQUEE_DASHBOARD_MAX_GROUPS``, topics by the registry, partitions by the topics,
statuses by :class:`~services.dashboard.lag.Status`, services by the instance cap. A
series whose partition or group disappears is removed, not left frozen at its last value.
"""

from __future__ import annotations

import threading

from prometheus_client import Gauge

from shared.metrics import Metrics

from .lag import Status
from .snapshot import Snapshot

LAG = ("group", "topic", "partition")


class LagExporter:
    def __init__(self, metrics: Metrics) -> None:
        m = metrics
        self.lag_messages = m.gauge(
            "marquee_consumer_lag_messages", "Records not yet committed by the group", LAG
        )
        self.lag_seconds = m.gauge(
            "marquee_consumer_lag_seconds",
            "Age of the oldest record not yet committed by the group (0 when caught up)",
            LAG,
        )
        self.lag_status = m.gauge(
            "marquee_consumer_lag_status",
            "Burrow-style partition status: 1 for the current one (OK, WARN, STALL, STOP, "
            "REWIND, UNKNOWN), 0 for the others",
            (*LAG, "status"),
        )
        self.end_offset = m.gauge(
            "marquee_topic_end_offset",
            "Offset of the next record to be written; rate() of it is events per second",
            ("topic", "partition"),
        )
        self.dead_letters = m.gauge(
            "marquee_dlq_messages", "Dead letters retained on a DLQ topic", ("topic",)
        )
        self.instances = m.gauge(
            "marquee_service_instances", "Instances by heartbeat state", ("service", "state")
        )
        self.heartbeat_age = m.gauge(
            "marquee_service_heartbeat_age_seconds",
            "Seconds since the freshest heartbeat of any instance of the service",
            ("service",),
        )
        self.source_up = m.gauge(
            "marquee_dashboard_source_up",
            "1 when the dashboard's last sample of the source succeeded",
            ("source",),
        )
        self._labels: dict[Gauge, set[tuple[str, ...]]] = {}
        self._lock = threading.Lock()

    def update(self, snapshot: Snapshot) -> None:
        state = snapshot.state
        with self._lock:
            lag_values, second_values, status_values = {}, {}, {}
            for group in state["lag"]["groups"]:
                for topic in group["topics"]:
                    for row in topic["partitions"]:
                        key = (group["group"], topic["topic"], str(row["partition"]))
                        if row["lag"] is not None:
                            lag_values[key] = row["lag"]
                        if row["lag_seconds"] is not None:
                            second_values[key] = row["lag_seconds"]
                        for status in Status:
                            status_values[(*key, status.value)] = float(
                                row["status"] == status.value
                            )
            self._set(self.lag_messages, lag_values)
            self._set(self.lag_seconds, second_values)
            self._set(self.lag_status, status_values)
            self._set(
                self.end_offset,
                {
                    (t["topic"], str(p)): end
                    for t in state["topics"]
                    for p, end in enumerate(t["end_offsets"])
                    if end is not None
                },
            )
            overview = state["overview"]
            self._set(
                self.dead_letters,
                {(d["topic"],): d["count"] for d in overview["dead_letters"]},
            )
            counts: dict[tuple[str, str], int] = {}
            ages: dict[tuple[str], float] = {}
            for instance in overview["instances"]:
                key = (instance["service"], instance["state"])
                counts[key] = counts.get(key, 0) + 1
                service = (instance["service"],)
                ages[service] = min(ages.get(service, float("inf")), instance["age_seconds"])
            self._set(self.instances, counts)
            self._set(self.heartbeat_age, ages)
            self._set(
                self.source_up,
                {(name,): float(s["ok"]) for name, s in state["sources"].items()},
            )

    def _set(self, gauge: Gauge, values: dict[tuple[str, ...], float]) -> None:
        for labels, value in values.items():
            gauge.labels(*labels).set(value)
        for gone in self._labels.get(gauge, set()) - set(values):
            gauge.remove(*gone)
        self._labels[gauge] = set(values)
