"""Alembic migrations on a real Postgres: apply to an empty schema, idempotent, complete."""

from __future__ import annotations

import pytest
from sqlalchemy import inspect, text

from shared.db import current_revision, make_engine, upgrade
from tests.integration.stack_helpers import marquee

EXPECTED_TABLES = {
    "users",
    "items",
    "interactions",
    "user_item",
    "model_versions",
    "user_factors",
    "item_factors",
    "generated_content",
    "apps",
    "experiments",
    "experiment_arms",
    "reranker_versions",
    "feedback_impressions",
    "feedback_slots",
    "feedback_interactions",
    "lm_versions",
    "alembic_version",
}

EXPECTED_VIEWS = {"experiment_user_counts", "experiment_interleaving_credits"}


@pytest.fixture
def unmigrated(settings):
    """``(engine, schema)``: a schema no migration has touched, dropped afterwards."""
    engine = make_engine(settings)
    try:
        yield engine, settings.postgres_schema
    finally:
        with engine.begin() as conn:
            conn.execute(text(f'DROP SCHEMA IF EXISTS "{settings.postgres_schema}" CASCADE'))
        engine.dispose()


def test_migrations_apply_to_an_empty_schema_and_are_idempotent(unmigrated):
    engine, schema = unmigrated
    assert current_revision(engine, schema) is None
    upgrade(engine, schema)
    head = current_revision(engine, schema)
    assert head is not None
    assert set(inspect(engine).get_table_names(schema=schema)) == EXPECTED_TABLES
    # Migration 0013: the report inputs are views over the feedback rows.
    assert set(inspect(engine).get_view_names(schema=schema)) == EXPECTED_VIEWS
    upgrade(engine, schema)  # second run: nothing to do, nothing breaks
    assert current_revision(engine, schema) == head


def test_cli_upgrade_reports_then_noops(settings, unmigrated):
    first = marquee(settings, "db", "upgrade")
    second = marquee(settings, "db", "upgrade")
    assert first.returncode == 0, first.stderr
    assert f"schema {settings.postgres_schema}: None -> " in first.stdout
    assert "nothing to do" in second.stdout


def test_schema_enforces_dedupe_and_one_active_model(engine):
    insert = text(
        "INSERT INTO interactions (event_source, event_id, user_id, item_id, action, weight,"
        " occurred_at, user_idx, item_idx)"
        " VALUES (:s, :i, 'u', 'it', 'click', 1, now(), 0, 0) ON CONFLICT DO NOTHING"
    )
    with engine.begin() as conn:
        assert conn.execute(insert, {"s": "src", "i": "e1"}).rowcount == 1
        assert conn.execute(insert, {"s": "src", "i": "e1"}).rowcount == 0
        assert conn.execute(insert, {"s": "other", "i": "e1"}).rowcount == 1
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO model_versions (status) VALUES ('active')"))
    from sqlalchemy.exc import IntegrityError

    with pytest.raises(IntegrityError), engine.begin() as conn:
        conn.execute(text("INSERT INTO model_versions (status) VALUES ('active')"))


def test_concurrent_migrators_take_turns(unmigrated):
    from concurrent.futures import ThreadPoolExecutor

    engine, schema = unmigrated
    with ThreadPoolExecutor(3) as pool:
        for future in [pool.submit(upgrade, engine, schema) for _ in range(3)]:
            future.result()  # none of them fails on a half-created schema
    assert current_revision(engine, schema) is not None
    assert set(inspect(engine).get_table_names(schema=schema)) == EXPECTED_TABLES
    # Migration 0013: the report inputs are views over the feedback rows.
    assert set(inspect(engine).get_view_names(schema=schema)) == EXPECTED_VIEWS


def test_interaction_indices_are_backfilled_from_the_id_maps(unmigrated):
    """0003 gives rows stored before it their users' and items' dense indices,
    registering ids that were never registered."""
    engine, schema = unmigrated
    upgrade(engine, schema, "0002")
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO users (user_id) VALUES ('x'), ('alice')"))
        conn.execute(
            text(
                "INSERT INTO interactions (event_source, event_id, user_id, item_id, action,"
                " weight, occurred_at) VALUES ('s', '1', 'alice', 'a1', 'click', 1, now()),"
                " ('s', '2', 'bob', 'a1', 'view', 1, now())"
            )
        )
    upgrade(engine, schema)
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT x.event_id, x.user_idx = u.idx, x.item_idx = i.idx FROM interactions x"
                " JOIN users u USING (user_id) JOIN items i USING (item_id) ORDER BY 1"
            )
        ).all()
    assert rows == [("1", True, True), ("2", True, True)]


def test_experiments_refuse_bad_definitions_and_orphan_counts(engine):
    from sqlalchemy.exc import IntegrityError

    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO experiments (name, kind, surface, starts_at) VALUES ('e', 'ab', 'home', now())"
            )
        )
        conn.execute(
            text(
                "INSERT INTO experiment_arms (experiment, arm, position, strategy, weight)"
                " VALUES ('e', 'a', 0, 'als', 1)"
            )
        )
    refused = [
        "INSERT INTO experiments (name, kind, surface, starts_at) VALUES ('f', 'abc', 'home', now())",
        "INSERT INTO experiments (name, kind, surface, starts_at, stops_at)"
        " VALUES ('f', 'ab', 'home', now(), now() - interval '1 day')",
        "INSERT INTO experiment_arms (experiment, arm, position, strategy, weight)"
        " VALUES ('e', 'b', 1, 'als', 0)",
        "INSERT INTO experiment_arms (experiment, arm, position, strategy, weight)"
        " VALUES ('e', 'b', 0, 'als', 1)",  # position taken
    ]
    for statement in refused:
        with pytest.raises(IntegrityError), engine.begin() as conn:
            conn.execute(text(statement))
    # The report's counts are a view over the feedback rows (0013): an impression of a
    # deleted experiment leaves no orphan count behind.
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO feedback_impressions (impression_id, user_id, served_at, strategy,"
                " surface, experiment, arm, slots) VALUES ('i1', 'u1', now(), 'als', 'home', 'e',"
                " 'a', 3)"
            )
        )
        counts = "SELECT user_id, arm, impressions, clicks FROM experiment_user_counts"
        assert conn.execute(text(counts)).all() == [("u1", "a", 3, 0)]
        conn.execute(text("DELETE FROM experiments WHERE name = 'e'"))
        assert conn.execute(text(counts)).all() == []
