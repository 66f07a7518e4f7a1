"""``marquee db upgrade|current``: the Postgres schema, through Alembic migrations."""

from __future__ import annotations

from ..config import Settings


def register(commands) -> None:
    parser = commands.add_parser("db", help="database migrations")
    sub = parser.add_subparsers(dest="db_command", required=True, parser_class=type(parser))
    up = sub.add_parser("upgrade", help="apply migrations up to the newest (idempotent)")
    up.add_argument("--schema", help="Postgres schema (default: MARQUEE_POSTGRES_SCHEMA)")
    up.set_defaults(handler=run_upgrade)
    cur = sub.add_parser("current", help="print the applied revision")
    cur.add_argument("--schema", help="Postgres schema (default: MARQUEE_POSTGRES_SCHEMA)")
    cur.set_defaults(handler=run_current)


def run_upgrade(args, settings: Settings) -> int:
    from ..db import current_revision, make_engine, upgrade

    schema = args.schema or settings.postgres_schema
    engine = make_engine(settings, schema=schema)
    try:
        before = current_revision(engine, schema)
        upgrade(engine, schema)
        after = current_revision(engine, schema)
    finally:
        engine.dispose()
    print(
        f"schema {schema}: "
        + (f"at {after}, nothing to do" if before == after else f"{before} -> {after}")
    )
    return 0


def run_current(args, settings: Settings) -> int:
    from ..db import current_revision, make_engine

    schema = args.schema or settings.postgres_schema
    engine = make_engine(settings, schema=schema)
    try:
        print(current_revision(engine, schema) or "empty (no migrations applied)")
    finally:
        engine.dispose()
    return 0
