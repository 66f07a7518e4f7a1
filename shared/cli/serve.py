"""``marquee serve NAME``: run one service (a Faust worker) in the foreground."""

from __future__ import annotations

from ..config import Settings
from ..service import runner


def register(commands) -> None:
    parser = commands.add_parser("serve", help="run a service in the foreground")
    parser.add_argument("service", choices=runner.SERVICES)
    parser.set_defaults(handler=run)


def run(args, settings: Settings) -> int:
    service = runner.load(args.service, args.env_file)
    runner.run(service)
    return 0
