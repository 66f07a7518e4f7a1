"""How many records a registry topic holds, per partition (its end offsets)."""

from __future__ import annotations

from kafka import KafkaConsumer, TopicPartition

from ..config import Settings
from ..topics import full_name
from .client import client_options


def end_offsets(settings: Settings, base: str) -> dict[int, int]:
    topic = full_name(base, settings.topic_prefix)
    consumer = KafkaConsumer(**client_options(settings), group_id=None)
    try:
        parts = [
            TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())
        ]
        return {tp.partition: off for tp, off in consumer.end_offsets(parts).items()}
    finally:
        consumer.close()
