"""The collector: samples Kafka and Postgres on a schedule, keeps bounded history in memory,
and publishes one immutable snapshot that every API request reads.

Two blocking ticks, each run by the app on its own thread: :meth:`Collector.sample_kafka`
(offsets, groups, heartbeats, dead letters; every ``dashboard_sample_seconds``) and
:meth:`Collector.sample_postgres` (models, counts, generated content). After each tick the
snapshot is rebuilt and serialised once, so answering a request costs a reference read,
however many browsers poll. History lives in ``deque(maxlen=...)`` ring buffers sized from
the settings; groups and instances are capped, so memory stays bounded whatever the cluster.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict, deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from shared.errors import InvalidEvent
from shared.events import EventCodec
from shared.topics import TOPICS

from .feedback_panel import FeedbackPanel
from .kafka_source import GroupInfo, KafkaSource, Partition, Record, TopicInfo
from .lag import Observation, evaluate, lag_seconds
from .postgres_source import PostgresSource
from .settings import DashboardSettings
from .snapshot import (
    PartitionLag,
    Snapshot,
    dumps,
    generator_part,
    lag_detail,
    lag_groups,
    rounded,
    with_quality,
)
from .stats import rate

log = logging.getLogger(__name__)

HEARTBEATS = "ops.heartbeats"


@dataclass
class SourceState:
    """How the last attempts to sample one source went (shown on the page and in /readyz)."""

    ok_at: float | None = None
    error: str | None = None
    samples: int = 0
    failures: int = 0

    def view(self, now: float) -> dict[str, Any]:
        return {
            "ok": self.error is None and self.ok_at is not None,
            "last_ok_seconds_ago": None
            if self.ok_at is None
            else round(max(0.0, now - self.ok_at), 1),
            "error": self.error,
        }


class Collector:
    def __init__(
        self,
        settings: DashboardSettings,
        *,
        kafka: Callable[[], KafkaSource],
        postgres: PostgresSource | None,
        clock: Callable[[], float] = time.time,
        on_sample: Callable[[Snapshot], None] | None = None,
    ) -> None:
        self.settings = settings
        self._make_kafka = kafka
        self._kafka: KafkaSource | None = None
        self.postgres = postgres
        self.clock = clock
        self.on_sample = on_sample
        self.codec = EventCodec(max_bytes=1024 * 1024, max_clock_skew_seconds=float("inf"))
        prefix = settings.topic_prefix
        #: broker topic name -> registry base name
        self.base_of = {f"{prefix}{base}": base for base in TOPICS}
        self.dlqs = [base for base in TOPICS if base.endswith(".dlq")]
        points = settings.history_points

        self.topic_info: dict[str, TopicInfo] = {}
        self.ends: dict[Partition, deque[tuple[float, int]]] = defaultdict(
            lambda: deque(maxlen=points)
        )
        self.begins: dict[Partition, int] = {}
        self._totals: dict[str, tuple[float, int]] = {}
        self.rates: dict[str, deque[tuple[float, float]]] = defaultdict(
            lambda: deque(maxlen=points)
        )
        self.groups: list[str] = []
        self.group_info: dict[str, GroupInfo] = {}
        self.lags: dict[tuple[str, str, int], PartitionLag] = {}
        self.instances: dict[str, dict[str, Any]] = {}
        self.letters: dict[str, deque[dict[str, Any]]] = {
            base: deque(maxlen=settings.dashboard_dead_letters_kept) for base in self.dlqs
        }
        self._last_letter: dict[Partition, int] = {}
        self.undecodable = 0
        self.generator_series: deque[tuple[float, float | None, float | None]] = deque(
            maxlen=points
        )
        self._next_discovery = 0.0
        self._capped_warned = False

        self.feedback = FeedbackPanel(points)
        self.kafka_state = SourceState()
        self.postgres_state = SourceState()
        self.feedback_state = SourceState()
        self._feedback_view: dict[str, Any] = self.feedback.view()
        self._kafka_view: dict[str, Any] = {}
        self._postgres_view: dict[str, Any] = {
            "recommender": {"active": None, "versions": [], "counts": None},
            "generator_db": None,
        }
        self._publish_lock = threading.Lock()
        self.snapshot: Snapshot = self._compose(self.clock())

    # -- lifecycle -----------------------------------------------------------------------
    def close(self) -> None:
        if self._kafka is not None:
            self._kafka.close()
            self._kafka = None

    # -- Kafka -----------------------------------------------------------------------------
    def sample_kafka(self) -> None:
        """One Kafka tick; a failure is recorded (page, /readyz, metrics), never raised."""
        now = self.clock()
        try:
            if self._kafka is None:
                self._kafka = self._make_kafka()
                self._next_discovery = 0.0
            self._sample_kafka(self._kafka, now)
        except Exception as exc:  # noqa: BLE001 - shown on the page; the next tick retries
            self._failed(self.kafka_state, "kafka", exc, now)
            # Fresh connections next time: a broker that restarted may have moved.
            source, self._kafka = self._kafka, None
            if source is not None:
                try:
                    source.close()
                except Exception as close_exc:  # noqa: BLE001
                    log.debug("closing the Kafka clients after a failure: %s", close_exc)
        else:
            self._succeeded(self.kafka_state, "kafka", now)
        # Rebuilt after a failure too: heartbeat ages keep counting while Kafka is away.
        self._kafka_view = self._kafka_part(now)
        self._publish(now)

    def _sample_kafka(self, src: KafkaSource, now: float) -> None:
        if now >= self._next_discovery:
            self._discover(src)
            self._next_discovery = now + self.settings.dashboard_discovery_seconds
        partitions = [(t, p) for t, info in self.topic_info.items() for p in range(info.partitions)]
        ends = src.end_offsets(partitions)
        for key, end in ends.items():
            self.ends[key].append((now, end))
        for topic in self.topic_info:
            total = (now, sum(e for (t, _), e in ends.items() if t == topic))
            before = self._totals.get(topic)
            if before is not None:
                self.rates[topic].append((now, rate(before, total)))
            self._totals[topic] = total

        committed = src.committed(self.groups)
        self.group_info = src.describe(self.groups)
        self._observe_lag(committed, ends, now)
        self._read_records(src, ends)
        self._forget_gone_instances(now)
        self._sample_generator(now)

    def _discover(self, src: KafkaSource) -> None:
        """Topics of the registry (configs, partitions) and the groups that consume them."""
        self.topic_info = src.topics(list(self.base_of))
        dlq_parts = [
            (t, p)
            for t, info in self.topic_info.items()
            if self.base_of[t].endswith(".dlq")
            for p in range(info.partitions)
        ]
        self.begins = src.begin_offsets(dlq_parts)

        every = src.group_ids()
        committed = src.committed(every)
        described = src.describe(every)
        ours = set(self.topic_info)
        relevant = sorted(
            g
            for g in every
            if {t for t, _ in committed.get(g, {})} & ours
            or (g in described and {t for t, _ in described[g].owned} & ours)
        )
        cap = self.settings.dashboard_max_groups
        if len(relevant) > cap and not self._capped_warned:
            log.warning(
                "%s consumer groups read Marquee topics; showing the first %s "
                "(MARQUEE_DASHBOARD_MAX_GROUPS)",
                len(relevant),
                cap,
            )
            self._capped_warned = True
        self.groups = relevant[:cap]
        kept = set(self.groups)
        for key in [k for k in self.lags if k[0] not in kept]:
            del self.lags[key]
        self._follow(src)

    def _follow(self, src: KafkaSource) -> None:
        """Read heartbeats from a while back and the newest dead letters of each DLQ."""
        wanted: dict[Partition, str] = {}
        for topic, info in self.topic_info.items():
            base = self.base_of[topic]
            if base == HEARTBEATS or base.endswith(".dlq"):
                for p in range(info.partitions):
                    wanted[(topic, p)] = base
        current = src.following
        if set(wanted) == current:
            return
        new = [p for p in wanted if p not in current]
        starts = {p: src.position(p) for p in wanted if p in current}
        beats = [p for p in new if wanted[p] == HEARTBEATS]
        starts.update(src.offsets_since(beats, self.settings.dashboard_heartbeat_lookback_seconds))
        letters = [p for p in new if wanted[p] != HEARTBEATS]
        ends = src.end_offsets(letters)
        kept = self.settings.dashboard_dead_letters_kept
        for p in letters:
            starts[p] = max(self.begins.get(p, 0), ends[p] - kept)
        src.follow(starts)

    def _observe_lag(
        self, committed: dict[str, dict[Partition, int]], ends: dict[Partition, int], now: float
    ) -> None:
        points = self.settings.history_points
        size = self.settings.dashboard_lag_window
        seen: set[tuple[str, str, int]] = set()
        for group in self.groups:
            offsets = committed.get(group, {})
            info = self.group_info.get(group)
            owned = info.owned if info else frozenset()
            topics = {t for t, _ in offsets} | {t for t, _ in owned}
            for topic in sorted(topics & set(self.topic_info)):
                for p in range(self.topic_info[topic].partitions):
                    if (topic, p) not in ends:
                        continue
                    key = (group, topic, p)
                    seen.add(key)
                    lag = self.lags.get(key)
                    if lag is None:
                        lag = self.lags[key] = PartitionLag(
                            deque(maxlen=points), deque(maxlen=points)
                        )
                    obs = Observation(now, offsets.get((topic, p)), ends[(topic, p)])
                    lag.observations.append(obs)
                    lag.evaluation = evaluate(
                        lag.observations, size=size, owned=(topic, p) in owned
                    )
                    lag.seconds = lag_seconds(obs.committed, self.ends[(topic, p)], now)
                    lag.history.append(
                        (now, obs.lag, None if lag.seconds is None else lag.seconds.seconds)
                    )
        for key in [k for k in self.lags if k not in seen]:
            del self.lags[key]

    def _read_records(self, src: KafkaSource, ends: dict[Partition, int]) -> None:
        for record in src.poll():
            base = self.base_of.get(record.topic)
            if base == HEARTBEATS:
                self._heartbeat(record)
            elif base in self.letters:
                self._dead_letter(base, record)
        # A flood of dead letters: skip to the newest few instead of decoding them all.
        kept = self.settings.dashboard_dead_letters_kept
        for partition in src.following:
            base = self.base_of.get(partition[0])
            end = ends.get(partition)
            if (
                base in self.letters
                and end is not None
                and end - src.position(partition) > 2 * kept
            ):
                src.seek(partition, end - kept)

    def _decode(self, record: Record):
        try:
            return self.codec.decode(record.value)
        except InvalidEvent as exc:
            self.undecodable += 1
            log.debug(
                "undecodable record %s[%s] offset=%s: %s",
                record.topic,
                record.partition,
                record.offset,
                exc,
            )
            return None

    def _heartbeat(self, record: Record) -> None:
        event = self._decode(record)
        if event is None or event.type != "marquee.heartbeat.v1":
            return
        beat = event.data
        at = event.time.timestamp()
        known = self.instances.get(beat.instance)
        if known is not None and known["at"] > at:
            return  # an older beat read back after a newer one
        self.instances[beat.instance] = {
            "service": beat.service,
            "instance": beat.instance,
            "status": beat.status,
            "started_at": beat.started_at.isoformat(),
            "version": beat.version,
            "counters": dict(beat.counters),
            "detail": beat.detail,
            "at": at,
        }
        cap = self.settings.dashboard_max_instances
        if len(self.instances) > cap:
            for name, _ in sorted(self.instances.items(), key=lambda kv: kv[1]["at"])[
                : len(self.instances) - cap
            ]:
                del self.instances[name]

    def _dead_letter(self, base: str, record: Record) -> None:
        partition = (record.topic, record.partition)
        if record.offset <= self._last_letter.get(partition, -1):
            return  # read again after reconnecting
        self._last_letter[partition] = record.offset
        event = self._decode(record)
        if event is None or event.type != "marquee.dead_letter.v1":
            entry = {"offset": record.offset, "error": "not a dead-letter event", "service": None}
        else:
            letter = event.data
            entry = {
                "offset": record.offset,
                "failed_at": letter.failed_at.isoformat(),
                "service": letter.service,
                "source_topic": letter.source_topic,
                "source_partition": letter.partition,
                "source_offset": letter.offset,
                "error": letter.error,
                "error_class": letter.error_class,
            }
        self.letters[base].append(entry)

    def _forget_gone_instances(self, now: float) -> None:
        """An instance silent for longer than the lookback has gone (a restart is a new one)."""
        horizon = now - self.settings.dashboard_heartbeat_lookback_seconds
        for name in [n for n, i in self.instances.items() if i["at"] < horizon]:
            del self.instances[name]

    def _fresh_instances(self, now: float, service: str | None = None) -> list[dict[str, Any]]:
        stale = self.settings.dashboard_heartbeat_stale_seconds
        return [
            i
            for i in self.instances.values()
            if now - i["at"] <= stale and (service is None or i["service"] == service)
        ]

    def _sample_generator(self, now: float) -> None:
        live = self._fresh_instances(now, "generator")
        if not live:
            return
        depths = [i["counters"]["queue_depth"] for i in live if "queue_depth" in i["counters"]]
        batches = [i["counters"]["batch_size"] for i in live if "batch_size" in i["counters"]]
        self.generator_series.append(
            (now, sum(depths) if depths else None, max(batches) if batches else None)
        )

    # -- Postgres --------------------------------------------------------------------------
    def sample_postgres(self) -> None:
        now = self.clock()
        if self.postgres is None:
            return
        try:
            versions = self.postgres.versions()
            counts = self.postgres.counts()
            generated = self.postgres.generated()
        except Exception as exc:  # noqa: BLE001 - shown on the page; the next tick retries
            self._failed(self.postgres_state, "postgres", exc, now)
        else:
            self._succeeded(self.postgres_state, "postgres", now)
            active = next((v for v in versions if v["status"] == "active"), None)
            self._postgres_view = {
                "recommender": {
                    "active": active,
                    "versions": [with_quality(v) for v in versions],
                    "counts": counts,
                },
                "generator_db": generated,
            }
        self._publish(now)

    # -- the feedback service ---------------------------------------------------------------
    def sample_feedback(self, answer: dict[str, Any] | BaseException) -> None:
        """One answer of the feedback service's ``/metrics/ctr`` (or why there was none)."""
        now = self.clock()
        if isinstance(answer, BaseException):
            self._failed(self.feedback_state, "feedback", answer, now)
        else:
            self.feedback.observe(answer, now)
            self._feedback_view = self.feedback.view()
            self._succeeded(self.feedback_state, "feedback", now)
        self._publish(now)

    # -- bookkeeping ---------------------------------------------------------------------
    def _failed(self, state: SourceState, name: str, exc: BaseException, now: float) -> None:
        message = f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
        if message != state.error:  # once per distinct error, not every tick
            log.warning("sampling %s failed: %s", name, message)
        state.error = message
        state.failures += 1

    def _succeeded(self, state: SourceState, name: str, now: float) -> None:
        if state.error is not None:
            log.info("sampling %s works again", name)
        state.error, state.ok_at = None, now
        state.samples += 1

    def healthy(self, state: SourceState, within: float) -> tuple[bool, str]:
        if state.ok_at is None:
            return False, state.error or "not sampled yet"
        age = self.clock() - state.ok_at
        if state.error is not None or age > within:
            return False, f"last good sample {age:.0f} s ago: {state.error or 'none since'}"
        return True, f"sampled {age:.1f} s ago"

    # -- the snapshot ----------------------------------------------------------------------
    def _publish(self, now: float) -> None:
        with self._publish_lock:
            self.snapshot = self._compose(now)
        if self.on_sample is not None:
            self.on_sample(self.snapshot)

    def _compose(self, now: float) -> Snapshot:
        # Only references swapped in whole by either tick are read here: never a deque or
        # dict that the other thread is changing.
        kafka = self._kafka_view
        pg = self._postgres_view
        state = {
            "generated_at": round(now, 3),
            "refresh_seconds": self.settings.dashboard_sample_seconds,
            "history_seconds": self.settings.dashboard_history_seconds,
            "topic_prefix": self.settings.topic_prefix,
            "sources": {
                "kafka": self.kafka_state.view(now),
                "postgres": self.postgres_state.view(now)
                if self.postgres is not None
                else {"ok": False, "last_ok_seconds_ago": None, "error": "not configured"},
            },
            "overview": kafka.get(
                "overview", {"instances": [], "throughput": {}, "dead_letters": []}
            ),
            "lag": kafka.get("lag", {"window": self.settings.dashboard_lag_window, "groups": []}),
            "topics": kafka.get("topics", []),
            "recommender": pg["recommender"],
            "generator": generator_part(kafka.get("generator", {}), pg["generator_db"]),
            "feedback": self._feedback_part(kafka, now),
        }
        lags = kafka.get("lag_items", {})
        return Snapshot(state=state, body=dumps(state), lag_detail=lambda: lag_detail(lags))

    def _feedback_part(self, kafka: dict[str, Any], now: float) -> dict[str, Any]:
        # One impressions event per list served: its topic's rate is lists per second.
        rate = kafka.get("overview", {}).get("throughput", {}).get("impressions") or {}
        return {
            **self._feedback_view,
            "source": self.feedback_state.view(now),
            "lists_per_second": rate.get("events_per_second"),
            "lists_series": rate.get("series", []),
        }

    def _kafka_part(self, now: float) -> dict[str, Any]:
        instances = [
            {
                **{k: v for k, v in i.items() if k != "at"},
                "age_seconds": round(now - i["at"], 1),
                "state": i["status"]
                if now - i["at"] <= self.settings.dashboard_heartbeat_stale_seconds
                else "missing",
            }
            for i in sorted(self.instances.values(), key=lambda i: (i["service"], i["instance"]))
        ]
        throughput = {
            self.base_of[t]: {
                "events_per_second": rounded(series[-1][1]) if series else None,
                "series": [[rounded(at, 1), rounded(v)] for at, v in series],
            }
            for t, series in sorted(self.rates.items())
            if t in self.topic_info
        }
        dead_letters = []
        for base in self.dlqs:
            topic = f"{self.settings.topic_prefix}{base}"
            info = self.topic_info.get(topic)
            if info is None:
                continue
            parts = [(topic, p) for p in range(info.partitions)]
            total = sum(self.ends[p][-1][1] for p in parts if self.ends[p])
            retained = total - sum(self.begins.get(p, 0) for p in parts)
            dead_letters.append(
                {
                    "topic": base,
                    "source": base.removesuffix(".dlq"),
                    "count": max(0, retained),
                    "total": total,
                    "latest": list(reversed(self.letters[base])),
                }
            )
        topics = []
        for topic, info in sorted(self.topic_info.items(), key=lambda kv: self.base_of[kv[0]]):
            ends = [
                self.ends[(topic, p)][-1][1] if self.ends[(topic, p)] else None
                for p in range(info.partitions)
            ]
            series = self.rates.get(topic)
            topics.append(
                {
                    "topic": self.base_of[topic],
                    "name": topic,
                    "partitions": info.partitions,
                    "replication": info.replication,
                    "retention_ms": info.retention_ms,
                    "cleanup_policy": info.cleanup_policy,
                    "end_offsets": ends,
                    "messages": sum(e for e in ends if e is not None),
                    "events_per_second": rounded(series[-1][1]) if series else None,
                    "is_dlq": self.base_of[topic].endswith(".dlq"),
                }
            )
        return {
            "overview": {
                "instances": instances,
                "throughput": throughput,
                "dead_letters": dead_letters,
                "undecodable_records": self.undecodable,
            },
            "lag": {
                "window": self.settings.dashboard_lag_window,
                "groups": lag_groups(self.lags, self.group_info, self.base_of),
            },
            "topics": topics,
            "generator": self._generator_live(now),
            "lag_items": {
                (g, self.base_of[t], p): (v.evaluation, v.seconds, tuple(v.history))
                for (g, t, p), v in self.lags.items()
            },
        }

    def _generator_live(self, now: float) -> dict[str, Any]:
        live = self._fresh_instances(now, "generator")
        part: dict[str, Any] = {
            "instances": [
                {"instance": i["instance"], "status": i["status"], "counters": i["counters"]}
                for i in live
            ],
            "queue_depth": None,
            "batch_size": None,
            "series": [[rounded(t, 1), q, b] for t, q, b in self.generator_series],
        }
        if live and self.generator_series and self.generator_series[-1][0] == now:
            part["queue_depth"], part["batch_size"] = self.generator_series[-1][1:]
        return part
