"""Create or reconcile the registry's topics through the admin API, idempotently."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

from kafka.admin import ConfigResource, ConfigResourceType, KafkaAdminClient
from kafka.errors import KafkaTimeoutError, TopicAlreadyExistsError, for_code

from ..config import Settings
from ..topics import TOPICS, TopicSpec

log = logging.getLogger(__name__)


@dataclass
class TopicReport:
    created: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    #: topic -> what was changed to match the registry
    reconciled: dict[str, list[str]] = field(default_factory=dict)
    #: topic -> settings that differ from the registry and were not (or cannot be) fixed
    drift: dict[str, list[str]] = field(default_factory=dict)
    #: topic -> harmless differences (more partitions than the registry: scaled out)
    notes: dict[str, list[str]] = field(default_factory=dict)

    @property
    def changed(self) -> bool:
        return bool(self.created or self.reconciled)

    def lines(self) -> list[str]:
        out = [f"created    {t}" for t in self.created]
        out += [f"reconciled {t}: {'; '.join(c)}" for t, c in self.reconciled.items()]
        out += [f"DRIFT      {t}: {'; '.join(c)}" for t, c in self.drift.items()]
        out += [f"note       {t}: {'; '.join(c)}" for t, c in self.notes.items()]
        out += [f"ok         {t}" for t in self.unchanged]
        return out


def _configs(spec: TopicSpec, replication: int) -> dict[str, str]:
    configs = spec.configs()
    if replication > 1:
        # acks=all only protects data if "all" means more than the leader alone.
        configs["min.insync.replicas"] = str(replication - 1)
    return configs


def _wanted(spec: TopicSpec, partitions: int | None) -> int:
    # A global override (MARQUEE_TOPIC_PARTITIONS) scales every non-DLQ topic alike.
    return partitions if partitions and not spec.name.endswith(".dlq") else spec.partitions


def _await_partitions(admin: KafkaAdminClient, wanted: dict[str, int], timeout_s: float) -> None:
    """Block until the broker's metadata shows each topic's new partitions with a leader.
    The controller accepts CreatePartitions before the brokers learn of it (KRaft propagates
    it through the metadata log), so a describe or a producer right after can still see the
    old count."""
    deadline = time.monotonic() + timeout_s
    while True:
        short = {
            t["name"]: len(t["partitions"])
            for t in admin.describe_topics(list(wanted))
            if len(t["partitions"]) < wanted[t["name"]]
            or any(p.get("leader_id", -1) < 0 for p in t["partitions"])
        }
        if not short:
            return
        if time.monotonic() >= deadline:
            raise KafkaTimeoutError(f"new partitions not visible after {timeout_s:g} s: {short}")
        time.sleep(0.1)


def ensure_topics(
    admin: KafkaAdminClient,
    *,
    prefix: str = "",
    replication: int = 1,
    partitions: int | None = None,
    reconcile: bool = True,
    specs: dict[str, TopicSpec] = TOPICS,
) -> TopicReport:
    """Create missing topics; with ``reconcile`` also raise partition counts and reset
    retention/cleanup to the registry's values. Partitions are never reduced and the
    replication factor is never changed: those show up in ``drift``."""
    report = TopicReport()
    grown: dict[str, int] = {}
    names = {f"{prefix}{name}": spec for name, spec in specs.items()}
    existing = set(admin.list_topics())

    missing = {n: s for n, s in names.items() if n not in existing}
    if missing:
        if reconcile:
            result = admin.create_topics(
                {
                    n: {
                        "num_partitions": _wanted(s, partitions),
                        "replication_factor": replication,
                        "configs": _configs(s, replication),
                    }
                    for n, s in missing.items()
                },
                wait_for_metadata=True,
                raise_errors=False,
            )
            for topic in result.get("topics", []):
                code = topic.get("error_code", 0)
                if code == 0:
                    report.created.append(topic["name"])
                elif code == TopicAlreadyExistsError.errno:
                    # Another replica created it a moment ago: check it like the others.
                    existing.add(topic["name"])
                else:
                    raise for_code(code)(f"creating {topic['name']}: {topic.get('error_message')}")
            report.created.sort()
        else:
            for n in missing:
                report.drift[n] = ["missing"]

    present = sorted(n for n in names if n in existing)
    if not present:
        return report
    described = {t["name"]: t for t in admin.describe_topics(present)}
    configs = admin.describe_configs(
        [ConfigResource(ConfigResourceType.TOPIC, n) for n in present], config_filter="all"
    ).get("topic", {})

    for name in present:
        spec = names[name]
        fixes: list[str] = []
        problems: list[str] = []
        have_parts = len(described[name]["partitions"])
        want_parts = _wanted(spec, partitions)
        if have_parts < want_parts:
            if reconcile:
                admin.create_partitions({name: want_parts})
                grown[name] = want_parts
                fixes.append(f"partitions {have_parts} -> {want_parts}")
            else:
                problems.append(f"partitions {have_parts}, registry says {want_parts}")
        elif have_parts > want_parts:
            # Scaled out beyond the registry: fine (partitions can never shrink anyway).
            report.notes[name] = [f"{have_parts} partitions, registry says {want_parts}"]
        replicas = {len(p["replica_nodes"]) for p in described[name]["partitions"]}
        if replicas != {replication}:
            problems.append(f"replication {sorted(replicas)}, expected {replication}")

        have = {k: v.get("value") for k, v in configs.get(name, {}).items()}
        diff = {k: v for k, v in _configs(spec, replication).items() if have.get(k) != v}
        if diff:
            desc = [f"{k} {have.get(k)} -> {v}" for k, v in sorted(diff.items())]
            if reconcile:
                admin.alter_configs(
                    [ConfigResource(ConfigResourceType.TOPIC, name, configs=diff)], incremental=True
                )
                fixes.extend(desc)
            else:
                problems.extend(desc)
        if fixes:
            report.reconciled[name] = fixes
        if problems:
            report.drift[name] = problems
        if not fixes and not problems:
            report.unchanged.append(name)
    if grown:
        _await_partitions(admin, grown, timeout_s=10.0)
    for name, fixes in report.reconciled.items():
        log.info("topic %s reconciled: %s", name, "; ".join(fixes))
    return report


def ensure_from_settings(
    admin: KafkaAdminClient, settings: Settings, *, reconcile: bool = True
) -> TopicReport:
    """:func:`ensure_topics` with the prefix, replication and partitions the settings name.
    The CLI, the services at start-up and the demo all call this."""
    return ensure_topics(
        admin,
        prefix=settings.topic_prefix,
        replication=settings.topic_replication,
        partitions=settings.topic_partitions,
        reconcile=reconcile,
    )
