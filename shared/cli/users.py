"""``marquee users add NAME``: create or update a SCRAM user for SASL authentication.

The password is read from stdin (``--password-stdin``) or prompted for; it never appears
on the command line, where other users of the machine could see it in the process list.
"""

from __future__ import annotations

import getpass
import sys

from ..config import Settings
from ..errors import ConfigurationError
from .topics import admin_client


def register(commands) -> None:
    parser = commands.add_parser("users", help="SASL/SCRAM users of the Kafka cluster")
    sub = parser.add_subparsers(dest="users_command", required=True, parser_class=type(parser))
    add = sub.add_parser("add", help="create or update a SCRAM user")
    add.add_argument("name")
    add.add_argument(
        "--mechanism", choices=["SCRAM-SHA-256", "SCRAM-SHA-512"], default="SCRAM-SHA-256"
    )
    add.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    add.set_defaults(handler=run_add)


def run_add(args, settings: Settings) -> int:
    from kafka.admin import UserScramCredentialUpsertion

    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    elif not sys.stdin.isatty():
        # getpass would warn, echo nothing useful and end in EOFError.
        raise ConfigurationError(
            "no terminal to ask for the password: pipe it in with --password-stdin "
            f'(echo "$PASSWORD" | marquee users add {args.name} --password-stdin)'
        )
    else:
        password = getpass.getpass(f"password for {args.name}: ")
    if len(password) < 8:
        raise ConfigurationError("the password must have at least 8 characters")
    admin = admin_client(settings)
    try:
        result = admin.alter_user_scram_credentials(
            [UserScramCredentialUpsertion(args.name, args.mechanism, password)]
        )
    finally:
        admin.close()
    error = result.get(args.name) if isinstance(result, dict) else None
    if error:
        print(f"marquee: error: the broker refused user {args.name!r}: {error}", file=sys.stderr)
        return 1
    print(f"user {args.name} set ({args.mechanism})")
    return 0
