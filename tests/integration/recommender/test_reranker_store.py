"""Re-ranker checkpoints in real Postgres: they round-trip, survive a restart, and a
re-ranker that loses to ALS order offline is never activated."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy.exc
from sqlalchemy import text

from services.recommender.reranker_offline import train_reranker
from services.recommender.reranker_store import RerankerStore
from tests.services.recommender.test_reranker import features, synthetic

ROOT = Path(__file__).resolve().parents[3]
PROBE = features(__import__("random").Random(11))

# What a freshly started worker does: open the store, load the active re-ranker, score.
RESTARTED = """
import json, sys
from services.recommender.reranker_store import RerankerStore
from shared.config import Settings
from shared.db import make_engine
probe = json.loads(sys.argv[1])
version, reranker = RerankerStore(make_engine(Settings())).active()
print(json.dumps([version.version, reranker.click_probability(probe)]))
"""


@pytest.fixture(scope="module")
def reranker():
    return train_reranker(synthetic(2_000), epochs=1)


def test_checkpoint_round_trips_and_survives_a_restart(engine, settings, reranker):
    store = RerankerStore(engine)
    saved = store.save(reranker, ndcg=0.23, baseline_ndcg=0.20, metrics={"users": 943})
    assert saved.status == "active" and saved.metrics == {"users": 943}
    # Equal to rounding: river sums over sets, whose order a loaded copy need not keep.
    loaded = store.load(saved.version).click_probability(PROBE)
    assert loaded == pytest.approx(reranker.click_probability(PROBE), rel=1e-12)

    out = subprocess.run(
        [sys.executable, "-c", RESTARTED, json.dumps(PROBE)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={
            **os.environ,
            "PYTHONPATH": str(ROOT),
            # The DSN through the environment, as a worker gets it: never on a command line.
            "MARQUEE_POSTGRES_DSN": settings.postgres_dsn.get_secret_value(),
            "MARQUEE_POSTGRES_SCHEMA": settings.postgres_schema,
        },
        timeout=120,
        check=True,
    )
    version, probability = json.loads(out.stdout)
    assert version == saved.version
    assert probability == pytest.approx(reranker.click_probability(PROBE), rel=1e-12)


def test_a_reranker_worse_than_als_order_is_not_activated(engine, reranker):
    store = RerankerStore(engine)
    good = store.save(reranker, ndcg=0.22, baseline_ndcg=0.20)
    worse = store.save(reranker, ndcg=0.19, baseline_ndcg=0.20)
    tie = store.save(reranker, ndcg=0.20, baseline_ndcg=0.20)
    assert (worse.status, tie.status) == ("rejected", "rejected")
    version, _ = store.active()
    assert version.version == good.version
    assert [v.status for v in store.versions()] == ["rejected", "rejected", "active"]

    better = store.save(reranker, ndcg=0.25, baseline_ndcg=0.20)
    assert store.active()[0].version == better.version
    assert {v.version: v.status for v in store.versions()}[good.version] == "retired"

    # The table refuses it too, whatever path tries.
    with pytest.raises(sqlalchemy.exc.IntegrityError), engine.begin() as conn:
        conn.execute(
            text("UPDATE reranker_versions SET status = 'active' WHERE version = :v"),
            {"v": worse.version},
        )


def test_no_active_reranker_means_none(engine):
    assert RerankerStore(engine).active() is None


def test_an_offline_evaluation_is_checkpointed_through_the_gate(engine):
    from services.recommender.model import AlsParams
    from services.recommender.reranker_offline import evaluate_reranker
    from services.recommender.reranker_store import checkpoint_evaluation
    from shared.data.movielens import Rating

    # A small world where each user reads items in order: what they read next is close to
    # what they read last, the signal the re-ranker has and ALS's order lacks.
    rng = __import__("random").Random(4)
    ratings = []
    for user in range(60):
        start = rng.randrange(40)
        for step in range(20):
            item = (start + step + rng.randrange(3)) % 60
            ratings.append(Rating(str(user), str(item), 5.0, 1_000_000 + user * 100 + step))
    result = evaluate_reranker(ratings, params=AlsParams(factors=8, regularization=0.1))
    saved = checkpoint_evaluation(RerankerStore(engine), result)
    ndcg = result["ndcg@10"]
    assert (saved.ndcg, saved.baseline_ndcg) == (ndcg["reranked"], ndcg["als"])
    assert saved.status == ("active" if ndcg["reranked"] > ndcg["als"] else "rejected")
    assert saved.metrics["protocol"] == "per_user_temporal" and saved.metrics["impressions"] > 0


def test_marquee_reranker_list_shows_versions_and_status(
    engine, settings, reranker, monkeypatch, capsys
):
    import argparse

    from services.recommender.cli_reranker import register

    RerankerStore(engine).save(reranker, ndcg=0.24, baseline_ndcg=0.20)
    RerankerStore(engine).save(reranker, ndcg=0.10, baseline_ndcg=0.20)
    monkeypatch.setenv("MARQUEE_POSTGRES_DSN", settings.postgres_dsn.get_secret_value())
    monkeypatch.setenv("MARQUEE_POSTGRES_SCHEMA", settings.postgres_schema)
    parser = argparse.ArgumentParser()
    parser.add_argument("--env-file", default=None)
    register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["reranker", "list"])
    assert args.handler(args, settings) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[1].split() == ["2", "rejected", "0.1000", "0.2000", "0.50x"]
    assert lines[2].split() == ["1", "active", "0.2400", "0.2000", "1.20x"]
