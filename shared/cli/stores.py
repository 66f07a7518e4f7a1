"""How a command opens a Postgres-backed store: its own engine, disposed afterwards, and a
table that does not exist yet reported as the migration to run, not as a traceback."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from ..config import Settings
from ..errors import ConfigurationError

_MISSING = re.compile(r'relation "(?:[^".]+\.)?([^"]+)" does not exist')


@contextmanager
def open_store(settings: Settings, factory: Callable, tables: str) -> Iterator:
    """``factory(engine)`` for the command; ``tables`` is the prefix of the tables it owns."""
    from sqlalchemy.exc import ProgrammingError

    from ..db import make_engine

    engine = make_engine(settings)
    try:
        yield factory(engine)
    except ProgrammingError as exc:
        missing = _MISSING.search(str(exc.orig))
        if missing and missing.group(1).startswith(tables):
            raise ConfigurationError(
                f"schema {settings.postgres_schema} has no {missing.group(1)} table: "
                "run `marquee db upgrade`"
            ) from None
        raise
    finally:
        engine.dispose()
