"""Engines are built lazily, with a checked schema on the search path."""

from __future__ import annotations

import pytest

from shared.config import Settings
from shared.db import make_engine
from shared.db.engine import quoted_schema
from shared.errors import ConfigurationError

# Nothing listens here: building an engine must not connect.
DSN = "postgresql+psycopg2://marquee:pw@127.0.0.1:1/marquee"


@pytest.mark.parametrize("name", ["public", "t_0123abcd", "_x"])
def test_plain_schema_names_are_quoted(name):
    assert quoted_schema(name) == f'"{name}"'


@pytest.mark.parametrize(
    "name", ['a"; DROP TABLE users; --', "Public", "1abc", "a-b", "", "x" * 64, "a b"]
)
def test_anything_else_is_refused_before_it_reaches_sql(name):
    with pytest.raises(ConfigurationError, match="invalid schema name"):
        quoted_schema(name)


class Connection:
    """Enough of a DBAPI connection for the connect listeners."""

    def __init__(self) -> None:
        self.executed: list[str] = []
        self.committed = False

    def cursor(self):
        return self

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def execute(self, sql):
        self.executed.append(sql)

    def commit(self):
        self.committed = True


def connect(engine) -> Connection:
    """Run Marquee's own connect listeners (not the driver dialect's) on a new connection."""
    conn = Connection()
    for listener in engine.pool.dispatch.connect:
        if listener.__module__ == "shared.db.engine":
            listener(conn, None)
    return conn


def test_an_engine_is_built_without_connecting_and_names_the_client():
    engine = make_engine(Settings(postgres_dsn=DSN, kafka_client_id="marquee-test"))
    assert engine.pool.checkedout() == 0
    assert "pw" not in repr(engine)
    assert engine.dialect.create_connect_args(engine.url)[1]["password"] == "pw"
    assert connect(engine).executed == []  # the public schema needs no search path


def test_another_schema_goes_first_on_the_search_path():
    conn = connect(make_engine(Settings(postgres_dsn=DSN), schema="t_abc"))
    assert conn.executed == ['SET search_path TO "t_abc", public'] and conn.committed


def test_a_bad_schema_fails_at_build_time():
    with pytest.raises(ConfigurationError):
        make_engine(Settings(postgres_dsn=DSN), schema="bad;schema")
