"""``marquee``: the command line for operators and app developers.

Every failure a user can cause or fix ends in a one-line error and a non-zero exit
code (2 for bad input, 1 for an unreachable or failing dependency), never a traceback.
"""

from __future__ import annotations

import argparse
import logging
import sys
from contextlib import ExitStack

from ..config import Settings, load_settings
from ..errors import ConfigurationError, InvalidEvent, MarqueeError
from ..kafka import failures as kafka_failures
from ..logging import configure_logging
from ..registry import command_registrars
from . import db, demo, experiments, load, publish, replay, schemas, serve, tail, topics, users

log = logging.getLogger(__name__)

EXIT_FAILURE = 1
EXIT_USAGE = 2
#: Options of ``marquee`` itself, valid before any command.
ROOT_OPTIONS = frozenset({"-h", "--help", "-v", "--verbose", "--env-file"})
#: Commands that run until stopped log at the configured level (INFO by default).
LONG_RUNNING = frozenset({"serve", "demo"})
#: Command modules of shared/ itself, in the order ``--help`` lists them.
BUILT_IN = (topics, publish, tail, replay, load, db, schemas, users, experiments, serve, demo)


class Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (and exit code 2), not a usage dump, and it
    names a mistyped option first (argparse would report only the required one it hid)."""

    #: The command line being parsed, so that a subcommand's error can see every option.
    argv: list[str] = []

    def error(self, message: str) -> None:  # type: ignore[override]
        known = set(self._option_string_actions) | ROOT_OPTIONS
        unknown = [
            word.split("=", 1)[0]
            for word in self.argv
            if word.startswith("-")
            and len(word) > 1
            and not self._negative_number_matcher.match(word)  # a value such as -1.5
            and word.split("=", 1)[0] not in known
        ]
        if unknown and "unrecognized arguments" not in message:
            message = f"unrecognized arguments: {' '.join(unknown)}; {message}"
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="marquee", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument(
        "--env-file",
        help="settings file (default: MARQUEE_ENV_FILE, else the local stack's .run/marquee.env "
        "when `make up` wrote it; '' for none); MARQUEE_* environment variables override it",
    )
    commands = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    for module in BUILT_IN:
        module.register(commands)
    # Services add their own commands through entry points (shared/registry.py).
    for register in command_registrars():
        register(commands)
    return parser


def _postgres_unreachable(exc: BaseException) -> bool:
    from sqlalchemy.exc import OperationalError

    return isinstance(exc, OperationalError)


def main(argv: list[str] | None = None) -> int:
    Parser.argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    with ExitStack() as stack:
        failures = None
        if not args.verbose and args.command != "serve":
            # The CLI reports connection failures itself, in one line, and its own progress.
            failures = stack.enter_context(kafka_failures.capture())
            logging.getLogger("alembic").setLevel(logging.WARNING)
        return _run(args, failures)


def _run(args, failures: kafka_failures.ConnectionFailures | None) -> int:
    settings: Settings | None = None
    try:
        settings = load_settings(env_file=args.env_file)
        level = settings.log_level
        if args.command not in LONG_RUNNING and level == "INFO":
            level = "WARNING"  # a command prints its own progress; libraries' INFO is noise
        configure_logging("DEBUG" if args.verbose else level, settings.log_format)
        settings = settings.for_prompt()
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
        if kafka_failures.unreachable(exc) and settings is not None:
            print(f"marquee: error: {kafka_failures.explain(settings, failures)}", file=sys.stderr)
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
