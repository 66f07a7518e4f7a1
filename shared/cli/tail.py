"""``marquee tail TOPIC``: pretty-print the events arriving on a topic.

Reads without a consumer group (nothing is committed, no other consumer is disturbed).
"""

from __future__ import annotations

import json
import time

from ..config import Settings
from ..errors import InvalidEvent
from ..events import EventCodec
from ..kafka.client import client_options
from ..topics import TOPICS, full_name


def register(commands) -> None:
    parser = commands.add_parser("tail", help="print events from a topic as they arrive")
    parser.add_argument("topic", help=f"one of: {', '.join(TOPICS)}")
    parser.add_argument("--from-beginning", action="store_true", help="start at the oldest event")
    parser.add_argument("-n", "--max", type=int, help="stop after this many events")
    parser.add_argument(
        "--idle-timeout", type=float, help="stop after this many seconds without an event"
    )
    parser.add_argument("--raw", action="store_true", help="print the JSON as received")
    parser.set_defaults(handler=run)


def format_record(record, codec: EventCodec, raw: bool = False) -> str:
    where = f"{record.topic}[{record.partition}]@{record.offset}"
    key = record.key.decode(errors="replace") if record.key else "-"
    if raw:
        return f"{where} key={key} {record.value.decode(errors='replace')}"
    try:
        event = codec.decode(record.value)
    except InvalidEvent as exc:
        return f"{where} key={key} INVALID: {exc}"
    data = json.dumps(event.data.model_dump(mode="json", exclude_none=True), ensure_ascii=False)
    return (
        f"{where} {event.time:%Y-%m-%d %H:%M:%S} {event.type} key={key} id={event.id}\n    {data}"
    )


def run(args, settings: Settings) -> int:
    from kafka import KafkaConsumer, TopicPartition

    if args.topic not in TOPICS:
        from ..errors import ConfigurationError

        raise ConfigurationError(f"unknown topic {args.topic!r}; known: {', '.join(TOPICS)}")
    topic = full_name(args.topic, settings.topic_prefix)
    codec = EventCodec(max_bytes=settings.max_event_bytes, max_clock_skew_seconds=float("inf"))
    consumer = KafkaConsumer(**client_options(settings), group_id=None, enable_auto_commit=False)
    try:
        partitions = consumer.partitions_for_topic(topic)
        if not partitions:
            from ..errors import ConfigurationError

            raise ConfigurationError(f"topic {topic!r} does not exist; run `marquee topics ensure`")
        assigned = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(assigned)
        if args.from_beginning:
            consumer.seek_to_beginning(*assigned)
        else:
            consumer.seek_to_end(*assigned)
        seen, last = 0, time.monotonic()
        while args.max is None or seen < args.max:
            batch = consumer.poll(timeout_ms=500)
            if not batch:
                if args.idle_timeout is not None and time.monotonic() - last > args.idle_timeout:
                    break
                continue
            last = time.monotonic()
            for records in batch.values():
                for record in records:
                    print(format_record(record, codec, args.raw), flush=True)
                    seen += 1
                    if args.max is not None and seen >= args.max:
                        break
    finally:
        consumer.close()
    return 0
