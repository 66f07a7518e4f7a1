"""The integration suite's private stack: where it runs and how to drive it (no fixtures).

Tests import these by name; fixtures live in conftest.py beside this file.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from shared.config import Settings

ROOT = Path(__file__).resolve().parents[2]
# Override all three to run a second test session beside the first (another checkout, a helper).
RUN_DIR = Path(os.environ.get("MARQUEE_TEST_RUN_DIR", ROOT / ".run" / "test"))
KAFKA_PORT = int(os.environ.get("MARQUEE_TEST_KAFKA_PORT", "19092"))
PG_PORT = int(os.environ.get("MARQUEE_TEST_PG_PORT", "15432"))
STACK_ENV = {
    **os.environ,
    "MARQUEE_RUN_DIR": str(RUN_DIR),
    "MARQUEE_KAFKA_PORT": str(KAFKA_PORT),
    "MARQUEE_PG_PORT": str(PG_PORT),
}


def run_stack_script(*args: str) -> subprocess.CompletedProcess:
    """Run a deploy/ script against the session's private stack."""
    return subprocess.run(
        [str(ROOT / "deploy" / args[0]), *args[1:]],
        env=STACK_ENV,
        capture_output=True,
        text=True,
        timeout=300,
    )


def cli_env(settings: Settings) -> dict[str, str]:
    """Environment that points the ``marquee`` CLI at this test's stack and prefix."""
    return {
        **os.environ,
        "MARQUEE_ENV_FILE": "",
        "MARQUEE_KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers,
        "MARQUEE_POSTGRES_DSN": settings.postgres_dsn.get_secret_value(),
        "MARQUEE_POSTGRES_SCHEMA": settings.postgres_schema,
        "MARQUEE_TOPIC_PREFIX": settings.topic_prefix,
    }


def marquee(
    settings: Settings, *args: str, input: str | None = None, **env: str
) -> subprocess.CompletedProcess:
    """Run the ``marquee`` CLI as a user would, against this test's stack and prefix."""
    return subprocess.run(
        [sys.executable, "-m", "shared.cli.main", *args],
        env=cli_env(settings) | env,
        input=input,
        capture_output=True,
        text=True,
        timeout=600,
    )


def seed_movielens(engine, count: int, ratings=None) -> None:
    """The first ``count`` MovieLens ratings (of ``ratings``, default all of them, in time
    order) stored as the recommender's ingest stores them."""
    from datetime import UTC, datetime

    from services.recommender.confidence import Weights
    from services.recommender.store import InteractionRow, InteractionStore
    from shared.data.movielens import load_ratings
    from shared.events import Interaction

    weights, store = Weights(), InteractionStore(engine)
    rows = []
    for n, r in enumerate((load_ratings() if ratings is None else ratings)[:count]):
        action = "like" if r.rating >= 4 else "view"
        interaction = Interaction(user_id=r.user_id, item_id=r.item_id, action=action)
        rows.append(
            InteractionRow(
                event_source="urn:test",
                event_id=f"ml-{n}",
                user_id=r.user_id,
                item_id=r.item_id,
                action=action,
                weight=weights.of(interaction),
                dwell_seconds=None,
                rating=r.rating,
                occurred_at=datetime.fromtimestamp(r.timestamp, UTC),
                kafka_topic="seed",
                kafka_partition=0,
                kafka_offset=n,
            )
        )
    for start in range(0, len(rows), 5_000):
        store.write(rows[start : start + 5_000])
