"""Session-wide real infrastructure for integration tests.

Kafka and Postgres start once per test session through the same deploy/ scripts users
run, on private ports and a private run directory, so a developer's own stack (make up)
is left alone. Each test gets a fresh topic prefix and a fresh Postgres schema.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy import text

from shared.config import Settings
from shared.db import make_engine, upgrade
from shared.kafka.admin import ensure_topics
from shared.kafka.client import client_options
from tests.integration.stack_helpers import KAFKA_PORT, RUN_DIR, run_stack_script


def pytest_collection_modifyitems(items):
    for item in items:
        if "integration" in item.path.parts:
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def stack() -> Iterator[dict[str, str]]:
    """Start Kafka and Postgres once; stop them at the end unless MARQUEE_TEST_KEEP_STACK=1."""
    for script in (("kafka/kafka.sh", "start"), ("postgres/postgres.sh", "start")):
        result = run_stack_script(*script)
        if result.returncode != 0:
            pytest.fail(f"{' '.join(script)} failed:\n{result.stderr}", pytrace=False)
    dsn = (RUN_DIR / "postgres" / "dsn").read_text().strip()
    yield {"bootstrap": f"127.0.0.1:{KAFKA_PORT}", "dsn": dsn}
    if os.environ.get("MARQUEE_TEST_KEEP_STACK") != "1":
        run_stack_script("kafka/kafka.sh", "stop")
        run_stack_script("postgres/postgres.sh", "stop")


@pytest.fixture
def settings(stack) -> Settings:
    """Settings for one test: the session's stack, a fresh topic prefix and schema."""
    tag = uuid.uuid4().hex[:10]
    return Settings(
        kafka_bootstrap_servers=stack["bootstrap"],
        postgres_dsn=stack["dsn"],
        topic_prefix=f"t{tag}.",
        postgres_schema=f"t_{tag}",
        kafka_client_id=f"test-{tag}",
    )


@pytest.fixture
def admin(settings):
    from kafka.admin import KafkaAdminClient

    client = KafkaAdminClient(**client_options(settings))
    yield client
    client.close()


@pytest.fixture
def topics(settings, admin) -> Iterator[Settings]:
    """The registry's topics under this test's prefix; deleted afterwards."""
    ensure_topics(admin, prefix=settings.topic_prefix)
    yield settings
    mine = [t for t in admin.list_topics() if t.startswith(settings.topic_prefix)]
    if mine:
        admin.delete_topics(mine)


@pytest.fixture
def engine(settings):
    """An engine on this test's fresh schema, migrated to head; dropped afterwards."""
    eng = make_engine(settings)
    upgrade(eng, settings.postgres_schema)
    yield eng
    with eng.begin() as conn:
        conn.execute(text(f'DROP SCHEMA IF EXISTS "{settings.postgres_schema}" CASCADE'))
    eng.dispose()
