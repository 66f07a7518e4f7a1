"""``marquee apps add NAME | list | revoke NAME``: the collector's per-app API keys.

``add`` prints the new key once; only its hash is stored, so a lost key is replaced (revoke,
then add under a new name), never recovered.
"""

from __future__ import annotations

from shared.cli.stores import open_store
from shared.config import Settings
from shared.errors import ConfigurationError


def register(commands) -> None:
    parser = commands.add_parser("apps", help="API keys of the front ends the collector accepts")
    sub = parser.add_subparsers(dest="apps_command", required=True, parser_class=type(parser))
    add = sub.add_parser("add", help="create an app and print its new key (once)")
    add.add_argument("name", help="lower-case letters, digits, '-' and '_'")
    add.add_argument(
        "--types",
        required=True,
        help="comma-separated event types it may send, e.g. marquee.interaction.v1",
    )
    add.add_argument("--source", required=True, help="the CloudEvents source its events must carry")
    add.set_defaults(handler=run_add)
    listing = sub.add_parser("list", help="every app: types, source, created, revoked")
    listing.set_defaults(handler=run_list)
    revoke = sub.add_parser("revoke", help="stop accepting an app's key")
    revoke.add_argument("name")
    revoke.set_defaults(handler=run_revoke)


def _store(settings: Settings):
    from .store import AppStore

    return open_store(settings, AppStore, "apps")


def run_add(args, settings: Settings) -> int:
    types = [t.strip() for t in args.types.split(",") if t.strip()]
    with _store(settings) as store:
        app, key = store.add(args.name, types, args.source)
    print(f"app {app.name}: may send {', '.join(sorted(app.event_types))} as {app.source}")
    print(f"key (shown once, store it now; only its hash is kept): {key}")
    return 0


def run_list(args, settings: Settings) -> int:
    with _store(settings) as store:
        apps = store.all()
    if not apps:
        print("no apps yet: marquee apps add NAME --types ... --source ...")
    for app in apps:
        state = f"revoked {app.revoked_at:%Y-%m-%d %H:%M}" if app.revoked_at else "active"
        print(
            f"{app.name}  key mqk_{app.key_id}_…  {state}  source {app.source}  "
            f"types {','.join(sorted(app.event_types))}  created {app.created_at:%Y-%m-%d %H:%M}"
        )
    return 0


def run_revoke(args, settings: Settings) -> int:
    with _store(settings) as store:
        if not store.revoke(args.name):
            raise ConfigurationError(f"no active app named {args.name!r} (see `marquee apps list`)")
    print(f"app {args.name} revoked: collectors refuse its key within their refresh interval")
    return 0
