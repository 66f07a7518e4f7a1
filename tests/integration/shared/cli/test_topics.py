"""`marquee topics ensure` against the real broker: idempotent, reports and fixes drift."""

from __future__ import annotations

from kafka.admin import ConfigResource, ConfigResourceType

from shared.kafka.admin import ensure_topics
from shared.topics import TOPICS
from tests.integration.stack_helpers import marquee


def test_ensure_twice_is_a_noop_the_second_time(settings, admin):
    try:
        first = marquee(settings, "topics", "ensure")
        assert first.returncode == 0, first.stderr
        assert first.stdout.count("created") == len(TOPICS)
        second = marquee(settings, "topics", "ensure")
        assert second.returncode == 0, second.stderr
        assert "created" not in second.stdout
        assert "nothing to do" in second.stdout
        report = ensure_topics(admin, prefix=settings.topic_prefix)
        assert not report.changed and not report.drift
        assert len(report.unchanged) == len(TOPICS)
    finally:
        admin.delete_topics([t for t in admin.list_topics() if t.startswith(settings.topic_prefix)])


def test_wrong_settings_are_reported_then_reconciled(topics, admin):
    settings = topics
    name = f"{settings.topic_prefix}interactions"
    admin.alter_configs(
        [ConfigResource(ConfigResourceType.TOPIC, name, configs={"retention.ms": "1000"})],
        incremental=True,
    )
    check = marquee(settings, "topics", "ensure", "--check")
    assert check.returncode == 1
    assert (
        f"DRIFT      {name}: retention.ms 1000 -> {TOPICS['interactions'].retention_ms}"
        in check.stdout
    )

    fix = marquee(settings, "topics", "ensure")
    assert fix.returncode == 0, fix.stdout + fix.stderr
    assert f"reconciled {name}" in fix.stdout
    assert marquee(settings, "topics", "ensure", "--check").returncode == 0


def test_partition_shortfall_is_raised_and_excess_is_reported(topics, admin):
    settings = topics
    report = ensure_topics(admin, prefix=settings.topic_prefix, partitions=8)
    assert "partitions 6 -> 8" in report.reconciled[f"{settings.topic_prefix}interactions"]
    report = ensure_topics(admin, prefix=settings.topic_prefix, reconcile=False)
    # More partitions than the registry is scaling out, not drift: a note, exit code 0.
    assert report.notes[f"{settings.topic_prefix}interactions"] == ["8 partitions, registry says 6"]
    assert not report.drift
