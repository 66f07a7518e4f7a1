"""A command's store: a table not migrated yet is named with the command that creates it."""

from __future__ import annotations

import pytest
from sqlalchemy.exc import ProgrammingError

from shared.cli.stores import open_store
from shared.config import Settings
from shared.errors import ConfigurationError

SETTINGS = Settings(postgres_dsn="postgresql+psycopg2://u:p@127.0.0.1:1/db", postgres_schema="s1")


def missing(relation: str) -> ProgrammingError:
    return ProgrammingError("SELECT", {}, Exception(f'relation "{relation}" does not exist'))


def test_a_missing_table_of_the_store_names_the_migration():
    with (
        pytest.raises(ConfigurationError) as caught,
        open_store(SETTINGS, lambda e: e, "experiment"),
    ):
        raise missing("experiment_user_counts")
    assert str(caught.value) == (
        "schema s1 has no experiment_user_counts table: run `marquee db upgrade`"
    )


def test_other_sql_errors_pass_through_and_the_engine_is_disposed():
    engines = []
    with pytest.raises(ProgrammingError), open_store(SETTINGS, engines.append, "apps"):
        raise missing("interactions")
    assert len(engines) == 1
