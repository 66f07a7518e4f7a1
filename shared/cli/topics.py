"""``marquee topics ensure|list``: create, reconcile and inspect the registry's topics."""

from __future__ import annotations

from ..config import Settings
from ..kafka.admin import ensure_from_settings
from ..kafka.client import client_options
from ..topics import TOPICS


def register(commands) -> None:
    parser = commands.add_parser("topics", help="create, reconcile or list Kafka topics")
    sub = parser.add_subparsers(dest="topics_command", required=True, parser_class=type(parser))
    ensure = sub.add_parser("ensure", help="create missing topics and fix settings that drifted")
    ensure.add_argument(
        "--check", action="store_true", help="only report differences; exit 1 if any"
    )
    ensure.set_defaults(handler=run_ensure)
    listing = sub.add_parser("list", help="print the registry (name, partitions, key, retention)")
    listing.set_defaults(handler=run_list)


def admin_client(settings: Settings):
    from kafka.admin import KafkaAdminClient

    return KafkaAdminClient(**client_options(settings, request_timeout_ms=15_000))


def run_ensure(args, settings: Settings) -> int:
    admin = admin_client(settings)
    try:
        report = ensure_from_settings(admin, settings, reconcile=not args.check)
    finally:
        admin.close()
    for line in report.lines():
        print(line)
    if report.drift:
        print(f"{len(report.drift)} topic(s) differ from the registry", flush=True)
        return 1
    if not report.changed:
        print("all topics match the registry; nothing to do")
    return 0


def run_list(args, settings: Settings) -> int:
    print(f"{'topic':34} {'partitions':>10} {'key':12} {'retention':>9}  cleanup")
    for name, spec in TOPICS.items():
        days = spec.retention_ms / 86_400_000
        print(
            f"{settings.topic_prefix + name:34} {spec.partitions:>10} {spec.key_field:12} "
            f"{days:>8g}d  {spec.cleanup_policy}"
        )
    return 0
