"""``marquee``: the command line for operators and app developers.

Every failure a user can cause or fix ends in a one-line error and a non-zero exit
code (2 for bad input, 1 for an unreachable or failing dependency), never a traceback.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

# The entrypoint gathers every command, services' own ones included.
from services.recommender import cli as recommender_cli  # noqa: E402, I001
from services.recommender import cli_train as recommender_train  # noqa: E402

from ..config import DEFAULT_ENV_FILE, Settings, load_settings
from ..errors import ConfigurationError, InvalidEvent, MarqueeError
from ..logging import configure_logging
from . import db, demo, generate, model, publish, replay, schemas, serve, tail, topics, users

log = logging.getLogger(__name__)

EXIT_FAILURE = 1
EXIT_USAGE = 2


class Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (and exit code 2), not a usage dump."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="marquee", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument(
        "--env-file",
        type=Path,
        default=Path(os.environ.get("MARQUEE_ENV_FILE", DEFAULT_ENV_FILE)),
        help="settings file written by `make up` (default: %(default)s); "
        "MARQUEE_* environment variables override it",
    )
    commands = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    for module in (
        topics,
        publish,
        tail,
        replay,
        db,
        schemas,
        users,
        serve,
        demo,
        recommender_cli,
        recommender_train,
        model,
        generate,
    ):
        module.register(commands)
    return parser


def _kafka_unreachable(exc: BaseException) -> bool:
    from kafka.errors import KafkaConnectionError, KafkaTimeoutError, NodeNotReadyError

    return isinstance(exc, KafkaConnectionError | KafkaTimeoutError | NodeNotReadyError)


def _postgres_unreachable(exc: BaseException) -> bool:
    from sqlalchemy.exc import OperationalError

    return isinstance(exc, OperationalError)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings: Settings = load_settings(env_file=args.env_file)
        configure_logging("DEBUG" if args.verbose else settings.log_level, settings.log_format)
        if not args.verbose and args.command != "serve":
            # The CLI reports connection failures itself, in one line, and its own progress.
            logging.getLogger("kafka").setLevel(logging.CRITICAL)
            logging.getLogger("alembic").setLevel(logging.WARNING)
        return int(args.handler(args, settings) or 0)
    except (InvalidEvent, ConfigurationError) as exc:
        print(f"marquee: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("marquee: interrupted", file=sys.stderr)
        return 130
    except MarqueeError as exc:
        print(f"marquee: error: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    except Exception as exc:
        if _kafka_unreachable(exc):
            servers = locals().get("settings")
            where = servers.kafka_bootstrap_servers if servers else "the configured servers"
            print(
                f"marquee: error: cannot reach Kafka at {where} ({type(exc).__name__}); "
                "start the local stack with `make up` or set MARQUEE_KAFKA_BOOTSTRAP_SERVERS",
                file=sys.stderr,
            )
            return EXIT_FAILURE
        if _postgres_unreachable(exc):
            print(
                f"marquee: error: cannot reach Postgres: {str(exc.orig).strip().splitlines()[0]}; "  # type: ignore[attr-defined]
                "start the local stack with `make up` or set MARQUEE_POSTGRES_DSN",
                file=sys.stderr,
            )
            return EXIT_FAILURE
        if args.verbose:
            raise
        print(
            f"marquee: error: {type(exc).__name__}: {exc} (rerun with -v for details)",
            file=sys.stderr,
        )
        return EXIT_FAILURE


if __name__ == "__main__":
    sys.exit(main())
