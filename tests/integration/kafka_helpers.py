"""Reading back what landed on the real broker."""

from __future__ import annotations

from kafka import KafkaConsumer, TopicPartition

from shared.config import Settings
from shared.kafka.client import client_options
from shared.kafka.offsets import end_offsets
from shared.topics import full_name


def record_count(settings: Settings, base: str) -> int:
    return sum(end_offsets(settings, base).values())


def read_all(settings: Settings, base: str, expected: int, timeout_s: float = 20.0) -> list:
    """Every record on the topic from the beginning (stops at ``expected`` or timeout)."""
    topic = full_name(base, settings.topic_prefix)
    consumer = KafkaConsumer(
        **client_options(settings),
        group_id=None,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        consumer_timeout_ms=int(timeout_s * 1000),
    )
    try:
        consumer.assign([TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic)])
        records = []
        for record in consumer:
            records.append(record)
            if len(records) >= expected:
                break
        return records
    finally:
        consumer.close()


def group_partitions(admin, group: str, topic: str) -> list[list[int]]:
    """Per member of consumer group ``group``, its partitions of ``topic`` (none yet for a
    member whose assignment is not decoded: the group is mid-rebalance)."""
    members = admin.describe_groups([group])[group]["members"]
    assignments = [m["member_assignment"] for m in members]
    return [
        sorted(
            p
            for a in (given["assigned_partitions"] if isinstance(given, dict) else ())
            if a["topic"] == topic
            for p in a["partitions"]
        )
        for given in assignments
    ]
