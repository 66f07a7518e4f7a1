"""The one registry of Kafka topics: names, partitioning, retention, keys, DLQs.

Services, the CLI and tests all take topic names from here (with the configured
prefix), so a topic is defined once.
"""

from __future__ import annotations

from dataclasses import dataclass, field

DAY_MS = 24 * 60 * 60 * 1000


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    retention_ms: int
    #: The ``data`` field whose value becomes the record key (decides the partition).
    key_field: str
    #: The CloudEvents types that may appear on this topic.
    event_types: tuple[str, ...]
    cleanup_policy: str = "delete"
    #: Consumed by a Marquee service, so it gets a ``<name>.dlq`` companion.
    has_dlq: bool = False
    description: str = ""
    #: The key field holds base64 bytes to decode (dead letters keep the original key).
    key_is_base64: bool = False
    extra_config: dict[str, str] = field(default_factory=dict)

    def configs(self) -> dict[str, str]:
        return {
            "retention.ms": str(self.retention_ms),
            "cleanup.policy": self.cleanup_policy,
            **self.extra_config,
        }


def _dlq(spec: TopicSpec) -> TopicSpec:
    return TopicSpec(
        name=f"{spec.name}.dlq",
        partitions=1,
        retention_ms=30 * DAY_MS,
        key_field="key_b64",
        key_is_base64=True,
        event_types=("marquee.dead_letter.v1",),
        description=f"dead letters from {spec.name}: original bytes, reason, position",
    )


_BASE = (
    TopicSpec(
        "catalog",
        3,
        -1,  # compacted: the latest version of every item stays, however old
        "item_id",
        ("marquee.item.v1",),
        cleanup_policy="compact",
        has_dlq=True,
        description="articles and other items with their text; compacted, keyed by item",
    ),
    TopicSpec(
        "interactions",
        6,
        7 * DAY_MS,
        "user_id",
        ("marquee.interaction.v1",),
        has_dlq=True,
        description="clicks, views, likes, shares, dwell; keyed by user so one user is ordered",
    ),
    TopicSpec(
        "impressions",
        6,
        7 * DAY_MS,
        "user_id",
        ("marquee.impression.v1",),
        has_dlq=True,
        description="recommendation lists as shown (items, positions, model); keyed by user",
    ),
    TopicSpec(
        "content-requests",
        3,
        7 * DAY_MS,
        "request_id",
        ("marquee.content_request.v1",),
        has_dlq=True,
        description="requests for generated articles, scripts, lyrics, answers",
    ),
    TopicSpec(
        "content-generated",
        3,
        30 * DAY_MS,
        "request_id",
        ("marquee.generated_content.v1",),
        has_dlq=True,
        description="exactly one reply per content request",
    ),
    TopicSpec(
        "content-stream",
        3,
        1 * DAY_MS,
        "request_id",
        ("marquee.content_chunk.v1",),
        description="partial output while a request is generated (MARQUEE_GENERATOR_STREAM)",
    ),
    TopicSpec(
        "recommendation-requests",
        3,
        1 * DAY_MS,
        "user_id",
        ("marquee.recommendation_request.v1",),
        has_dlq=True,
        description="recommendation requests for services that prefer Kafka to HTTP",
    ),
    TopicSpec(
        "recommendations",
        3,
        1 * DAY_MS,
        "user_id",
        ("marquee.recommendations.v1",),
        description="replies to recommendation-requests, correlated by request_id",
    ),
    TopicSpec(
        "ops.heartbeats",
        1,
        1 * DAY_MS,
        "instance",
        ("marquee.heartbeat.v1",),
        has_dlq=True,
        description="service health and counters, read by the dashboard",
    ),
)

#: Every topic, the DLQs included, by base name.
TOPICS: dict[str, TopicSpec] = {
    spec.name: spec for base in _BASE for spec in ((base, _dlq(base)) if base.has_dlq else (base,))
}

#: The topic each event type is published to by default.
TOPIC_FOR_TYPE: dict[str, str] = {t: spec.name for spec in _BASE for t in spec.event_types}


def spec(name: str) -> TopicSpec:
    try:
        return TOPICS[name]
    except KeyError:
        raise KeyError(f"unknown topic {name!r}; known: {', '.join(TOPICS)}") from None


def full_name(name: str, prefix: str = "") -> str:
    """The topic's name on the broker: the configured prefix, then the base name."""
    spec(name)
    return f"{prefix}{name}"


def base_name(topic: str, prefix: str = "") -> str:
    """Inverse of :func:`full_name`; raises ``KeyError`` for a topic not in the registry."""
    if prefix and topic.startswith(prefix):
        topic = topic[len(prefix) :]
    spec(topic)
    return topic
