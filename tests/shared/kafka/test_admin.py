"""What ``topics ensure`` asks the broker for, decided before any admin call."""

from __future__ import annotations

from shared.kafka.admin import TopicReport, _configs, _wanted
from shared.topics import spec


def test_replicated_topics_need_all_but_one_replica_in_sync():
    assert "min.insync.replicas" not in _configs(spec("interactions"), 1)
    assert _configs(spec("interactions"), 3)["min.insync.replicas"] == "2"
    assert (
        _configs(spec("interactions"), 3)["retention.ms"]
        == spec("interactions").configs()["retention.ms"]
    )


def test_a_partition_override_scales_every_topic_but_the_dlqs():
    assert _wanted(spec("interactions"), None) == spec("interactions").partitions
    assert _wanted(spec("interactions"), 12) == 12
    assert _wanted(spec("interactions.dlq"), 12) == spec("interactions.dlq").partitions


def test_the_report_lists_changes_before_what_was_fine():
    report = TopicReport(
        created=["a"], unchanged=["b"], reconciled={"c": ["partitions 3 -> 6"]}, drift={"d": ["x"]}
    )
    assert report.changed
    assert report.lines() == [
        "created    a",
        "reconciled c: partitions 3 -> 6",
        "DRIFT      d: x",
        "ok         b",
    ]
    assert not TopicReport(unchanged=["b"], drift={"d": ["x"]}).changed
