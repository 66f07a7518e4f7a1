"""``marquee schemas generate|check``: the JSON Schemas generated from the event models."""

from __future__ import annotations

from ..config import Settings
from ..events import schemas


def register(commands) -> None:
    parser = commands.add_parser("schemas", help="versioned JSON Schemas of the events")
    sub = parser.add_subparsers(dest="schemas_command", required=True, parser_class=type(parser))
    sub.add_parser("generate", help="rewrite shared/schemas from the models").set_defaults(
        handler=run_generate
    )
    sub.add_parser("check", help="exit 1 when shared/schemas drifted").set_defaults(
        handler=run_check
    )


def run_generate(args, settings: Settings) -> int:
    written = schemas.write()
    print("\n".join(f"wrote {p}" for p in written) or "schemas are up to date")
    return 0


def run_check(args, settings: Settings) -> int:
    stale = schemas.drift()
    if stale:
        print(f"out of date: {', '.join(stale)}; run `marquee schemas generate`")
        return 1
    print("schemas match the models")
    return 0
