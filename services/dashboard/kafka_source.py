"""Kafka adapter: what the dashboard asks the cluster, through kafka-python, as plain data.

One admin client for offsets, groups and topic metadata; one group-less consumer that reads
``ops.heartbeats`` and the dead-letter topics without committing anything (so the dashboard
never joins, or disturbs, anybody's consumer group). Not thread-safe: the collector calls it
from one thread.
"""

from __future__ import annotations

import logging
import struct
import time
from dataclasses import dataclass

from kafka import KafkaConsumer, TopicPartition
from kafka.admin import ConfigResource, ConfigResourceType, KafkaAdminClient
from kafka.protocol.consumer import OffsetSpec

from shared.config import Settings
from shared.kafka.client import client_options

log = logging.getLogger(__name__)

Partition = tuple[str, int]  # (topic on the broker, partition)


@dataclass(frozen=True)
class TopicInfo:
    partitions: int
    replication: int
    retention_ms: int | None
    cleanup_policy: str | None


@dataclass(frozen=True)
class GroupInfo:
    state: str
    members: int
    #: Partitions assigned to a live member right now.
    owned: frozenset[Partition]


@dataclass(frozen=True)
class Record:
    topic: str
    partition: int
    offset: int
    timestamp_ms: int
    value: bytes | None


def assigned_partitions(assignment) -> set[Partition]:
    """The partitions in a member's assignment, decoded by kafka-python or (raw bytes) here.

    kafka-python gives up on assignments whose version it does not know, such as Faust's
    (version 4), though every version shares the v0 layout that matters: int16 version,
    then an array of (string topic, array of int32 partitions), then user data.
    """
    if isinstance(assignment, dict):
        return {
            (t["topic"], p)
            for t in assignment.get("assigned_partitions") or ()
            for p in t["partitions"]
        }
    if not isinstance(assignment, bytes | bytearray) or len(assignment) < 6:
        return set()
    try:
        found = set()
        (topics,) = struct.unpack_from(">i", assignment, 2)
        at = 6
        for _ in range(max(0, topics)):
            (length,) = struct.unpack_from(">h", assignment, at)
            topic = bytes(assignment[at + 2 : at + 2 + length]).decode()
            at += 2 + length
            (count,) = struct.unpack_from(">i", assignment, at)
            found.update((topic, p) for p in struct.unpack_from(f">{count}i", assignment, at + 4))
            at += 4 + 4 * count
        return found
    except (struct.error, UnicodeDecodeError, ValueError):
        log.debug("undecodable group member assignment (%s bytes)", len(assignment))
        return set()


class KafkaSource:
    def __init__(self, settings: Settings) -> None:
        # Short timeouts: a sample that cannot finish soon is skipped, not queued behind.
        options = client_options(settings, request_timeout_ms=10_000, bootstrap_timeout_ms=10_000)
        self.admin = KafkaAdminClient(**options)
        self.consumer = KafkaConsumer(
            **options,
            group_id=None,
            enable_auto_commit=False,
            max_partition_fetch_bytes=256 * 1024,
        )
        self._assigned: set[Partition] = set()

    def close(self) -> None:
        self.consumer.close()
        self.admin.close()

    # -- metadata ----------------------------------------------------------------------
    def topics(self, names: list[str]) -> dict[str, TopicInfo]:
        """Partitions, replication and retention of the topics among ``names`` that exist."""
        existing = set(self.admin.list_topics())
        present = [n for n in names if n in existing]
        if not present:
            return {}
        described = {t["name"]: t for t in self.admin.describe_topics(present)}
        configs = self.admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, n) for n in present], config_filter="all"
        ).get("topic", {})
        found = {}
        for name in present:
            parts = described[name]["partitions"]
            values = {k: v.get("value") for k, v in configs.get(name, {}).items()}
            retention = values.get("retention.ms")
            found[name] = TopicInfo(
                partitions=len(parts),
                replication=max((len(p["replica_nodes"]) for p in parts), default=0),
                retention_ms=int(retention) if retention not in (None, "") else None,
                cleanup_policy=values.get("cleanup.policy"),
            )
        return found

    def group_ids(self) -> list[str]:
        """Consumer groups: those with members ("consumer") and those that only commit
        offsets for manually assigned partitions (an empty protocol type)."""
        return sorted(
            g["group_id"]
            for g in self.admin.list_groups()
            if g.get("protocol_type") in ("consumer", "")
        )

    # -- offsets -----------------------------------------------------------------------
    def end_offsets(self, partitions: list[Partition]) -> dict[Partition, int]:
        return self._offsets(partitions, OffsetSpec.LATEST)

    def begin_offsets(self, partitions: list[Partition]) -> dict[Partition, int]:
        return self._offsets(partitions, OffsetSpec.EARLIEST)

    def _offsets(self, partitions: list[Partition], spec: OffsetSpec) -> dict[Partition, int]:
        if not partitions:
            return {}
        found = self.admin.list_partition_offsets(
            {TopicPartition(t, p): spec for t, p in partitions}
        )
        return {(tp.topic, tp.partition): o.offset for tp, o in found.items()}

    def committed(self, groups: list[str]) -> dict[str, dict[Partition, int]]:
        """Every committed offset of each group (one request per coordinator)."""
        if not groups:
            return {}
        found = self.admin.list_group_offsets(list(groups))
        return {
            group: {
                (tp.topic, tp.partition): om.offset for tp, om in offsets.items() if om.offset >= 0
            }
            for group, offsets in found.items()
        }

    def describe(self, groups: list[str]) -> dict[str, GroupInfo]:
        if not groups:
            return {}
        found = {}
        for group, info in self.admin.describe_groups(list(groups)).items():
            if info.get("error"):
                continue
            owned: set[Partition] = set()
            for member in info.get("members") or ():
                owned.update(assigned_partitions(member.get("member_assignment")))
            found[group] = GroupInfo(
                state=str(info.get("group_state") or "Unknown"),
                members=len(info.get("members") or ()),
                owned=frozenset(owned),
            )
        return found

    # -- records (heartbeats, dead letters) --------------------------------------------
    def follow(self, starts: dict[Partition, int]) -> None:
        """Read these partitions from the given offsets on (replacing any earlier set)."""
        tps = [TopicPartition(t, p) for t, p in starts]
        self.consumer.assign(tps)
        for tp in tps:
            self.consumer.seek(tp, starts[(tp.topic, tp.partition)])
        self._assigned = set(starts)

    @property
    def following(self) -> set[Partition]:
        return set(self._assigned)

    def offsets_since(self, partitions: list[Partition], seconds: float) -> dict[Partition, int]:
        """The first offset of each partition written in the last ``seconds`` (else its end)."""
        if not partitions:
            return {}
        since_ms = int((time.time() - seconds) * 1000)
        found = self.admin.list_partition_offsets(
            {TopicPartition(t, p): since_ms for t, p in partitions}
        )
        ends = self.end_offsets(partitions)
        result = {}
        for tp, o in found.items():
            key = (tp.topic, tp.partition)
            result[key] = o.offset if o.offset >= 0 else ends[key]
        return result

    def position(self, partition: Partition) -> int:
        return self.consumer.position(TopicPartition(*partition))

    def seek(self, partition: Partition, offset: int) -> None:
        self.consumer.seek(TopicPartition(*partition), offset)

    def poll(self, max_records: int = 2_000) -> list[Record]:
        if not self._assigned:
            return []
        batches = self.consumer.poll(timeout_ms=100, max_records=max_records)
        return [
            Record(r.topic, r.partition, r.offset, r.timestamp, r.value)
            for records in batches.values()
            for r in records
        ]
