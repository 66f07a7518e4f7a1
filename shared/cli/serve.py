"""``marquee serve NAME``: run one service (a Faust worker) in the foreground."""

from __future__ import annotations

import argparse

from ..config import Settings
from ..registry import services


def register(commands) -> None:
    known = services()
    parser = commands.add_parser(
        "serve",
        help="run a service in the foreground",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="\n".join(
            f"{spec.name} ({spec.default_port}): {spec.summary}" for spec in known.values()
        ),
    )
    parser.add_argument("service", choices=list(known))
    parser.set_defaults(handler=run)


def run(args, settings: Settings) -> int:
    from ..service import runner

    service = runner.load(args.service, args.env_file)
    runner.run(service)
    return 0
