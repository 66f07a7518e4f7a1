"""Retraining against real Postgres: gate, atomic activation, retention, factors via COPY,
and the catalog's content embedded before the fit."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import UTC, datetime

import numpy as np
import pytest
from sqlalchemy import text

from services.recommender import freshness
from services.recommender.catalog_store import PostgresCatalog
from services.recommender.embedding.convert import NAME as ENCODER
from services.recommender.model_store import ModelStore
from services.recommender.persistence import CatalogRow
from services.recommender.serving import load_active
from services.recommender.store import InteractionRow, InteractionStore
from shared.data.movielens import load_films, to_item_event
from tests.integration.stack_helpers import marquee, seed_movielens


@pytest.fixture
def seeded(engine):
    seed_movielens(engine, 30_000)
    return engine


def models(settings) -> list[dict]:
    result = marquee(settings, "models", "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_retrain_gate_activation_and_retention(settings, seeded):
    first = marquee(settings, "train")
    assert first.returncode == 0, first.stderr
    assert "model version 1: active" in first.stdout
    (v1,) = models(settings)
    assert v1["status"] == "active" and v1["metrics"]["passed"]
    holdout = v1["metrics"]["holdout"]
    assert holdout["served"]["precision@10"] > holdout["popularity"]["precision@10"]

    # Factors went in through COPY, one row per user and item, readable back intact.
    store = ModelStore(seeded)
    users, user_factors = store.factors(1, "user")
    items, item_factors = store.factors(1, "item")
    assert len(users) == v1["n_users"] and len(items) == v1["n_items"]
    assert user_factors.shape == (v1["n_users"], 64) and np.isfinite(item_factors).all()

    # An impossible gate: the retrain is stored as rejected and the active model stays.
    strict = marquee(settings, "train", MARQUEE_RECOMMENDER_QUALITY_GATE_RATIO="100")
    assert strict.returncode == 1
    assert "FAILS" in strict.stdout and "model version 2: rejected" in strict.stdout
    assert {v["id"]: v["status"] for v in models(settings)} == {1: "active", 2: "rejected"}

    # A passing retrain replaces the active one atomically; only the newest 2 are kept.
    third = marquee(settings, "train", MARQUEE_RECOMMENDER_KEEP_VERSIONS="2")
    assert third.returncode == 0, third.stderr
    assert {v["id"]: v["status"] for v in models(settings)} == {3: "active", 2: "rejected"}
    with seeded.connect() as conn:
        assert (
            conn.execute(
                text("SELECT count(DISTINCT model_version) FROM user_factors")
            ).scalar_one()
            == 2
        )


def test_recommend_cli_reads_the_active_model(settings, seeded):
    untrained = marquee(settings, "recommend", "1")
    assert untrained.returncode == 2
    assert untrained.stderr.strip() == "marquee: error: no active model yet: run `marquee train`"
    assert marquee(settings, "train").returncode == 0
    result = marquee(settings, "recommend", "1", "-k", "5", "--json")
    assert result.returncode == 0, result.stderr
    body = json.loads(result.stdout)
    assert body["strategy"] == "als" and len(body["items"]) == 5
    assert result.stderr == ""  # no library INFO lines around a command's own output
    cold = json.loads(marquee(settings, "recommend", "never-seen", "--json").stdout)
    assert cold["strategy"] == "popularity"
    # `marquee models`: every row's columns line up under the header's.
    lines = marquee(settings, "models").stdout.splitlines()
    header, rows = lines[0], lines[1:]
    assert rows and all(len(row) == len(header) for row in rows), lines


def test_evaluate_only_stores_nothing(settings, seeded):
    result = marquee(settings, "train", "--evaluate-only")
    assert result.returncode == 0, result.stderr
    assert "quality gate" in result.stdout
    assert models(settings) == []


def test_training_lock_lets_one_trainer_at_a_time(engine):
    from services.recommender.model_store import TrainingBusy

    store = ModelStore(engine)
    with store.training_lock():
        with pytest.raises(TrainingBusy, match="another worker is training"):
            with ModelStore(engine).training_lock():
                pass
    with store.training_lock():  # released: available again
        pass


def test_training_with_no_interactions_is_a_clear_error(settings, engine):
    result = marquee(settings, "train")
    assert result.returncode == 2
    assert "only 0 interactions stored; publish some before training" in result.stderr


def test_workers_retrain_on_their_own_when_data_arrives(topics, seeded, tmp_path):
    """No `marquee train`: the first model comes once enough is stored, the next one after
    N new interactions; the worker serves each as soon as it is active."""
    import sys

    from tests.integration.worker_helpers import get, service_worker

    serve = [sys.executable, "-m", "shared.cli.main", "serve", "recommender"]
    env = {
        "MARQUEE_RECOMMENDER_RETRAIN_CHECK_SECONDS": "1",
        "MARQUEE_RECOMMENDER_RETRAIN_MIN_EVENTS": "20000",
        "MARQUEE_RECOMMENDER_RETRAIN_AFTER_EVENTS": "1000",
        "MARQUEE_RECOMMENDER_MODEL_POLL_SECONDS": "1",
    }
    # /readyz needs a loaded model, so "ready" means the worker trained one itself.
    with service_worker(topics, tmp_path, serve, **env) as (_, port):
        assert [(v["id"], v["status"]) for v in models(topics)] == [(1, "active")]
        seed_movielens(seeded, 31_000)  # 1,000 new interactions
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            body = json.loads(get(port, "/users/1/recommendations")[1])
            if body.get("model_version") == 2:
                break
            time.sleep(0.5)
        assert body["model_version"] == 2
        assert [v["n_interactions"] for v in models(topics)] == [31_000, 30_000]
        metrics = get(port, "/metrics")[1].decode()
        assert 'marquee_retrains_total{outcome="active"' in metrics
        assert "marquee_model_version 2.0" in metrics
        assert 'marquee_model_ndcg_at_10{model="served"' in metrics


def test_interactions_and_factors_cross_postgres_exactly_in_binary_copy(seeded):
    store = ModelStore(seeded)
    interactions, _ = store.events()
    with seeded.connect() as conn:
        stored = conn.execute(
            text(
                "SELECT user_id, item_id, weight, CAST(extract(epoch FROM occurred_at) AS float8)"
                " FROM interactions"
            )
        ).all()
    assert len(interactions) == len(stored) == 30_000
    key = lambda e: (e[0], e[1], np.float32(e[2]), e[3])  # noqa: E731
    assert sorted(map(key, interactions)) == sorted(map(key, stored))

    ids = ["plain", "tab\there", "new\nline", "back\\slash", "ünïcödé", "x" * 300]
    factors = np.random.default_rng(7).normal(size=(len(ids), 64)).astype(np.float32)
    factors[0, :3] = [0.0, -0.0, np.float32(1e-38)]
    version = store.save(
        status="candidate", params={}, metrics={}, users=ids, items=ids[:2],
        user_factors=factors, item_factors=factors[:2], n_interactions=0, fit_seconds=0.0,
    )  # fmt: skip
    back_ids, back = store.factors(version, "user")
    assert back_ids == ids
    assert back.dtype == np.float32 and np.array_equal(back, factors)
    assert store.factors(version, "item")[0] == ids[:2]


def test_a_second_catch_up_folds_in_what_was_stored_after_the_first(settings, seeded):
    """A worker serves a version once it has caught up; batches stored meanwhile found no
    version to fold into, so it catches up once more, from where the first read."""
    assert marquee(settings, "train").returncode == 0
    interactions, models = InteractionStore(seeded), ModelStore(seeded)
    loaded = load_active(interactions, models, 30 * 86_400)
    asyncio.run(freshness.catch_up(interactions, models, loaded))
    first_read = loaded.caught_up_to
    users = loaded.recommender.users
    readers = [users.external(i) for i in range(3)]
    assert all(loaded.recommender.factors_of("user", u) is not None for u in readers)
    interactions.write(
        [
            InteractionRow(
                event_source="urn:test",
                event_id=f"late-{u}",
                user_id=u,
                item_id="late-article",
                action="like",
                weight=4.0,
                dwell_seconds=None,
                rating=None,
                occurred_at=datetime.now(UTC),
                kafka_topic="t",
                kafka_partition=0,
                kafka_offset=n,
            )  # fmt: skip
            for n, u in enumerate(readers)
        ]
    )
    late = asyncio.run(freshness.catch_up(interactions, models, loaded))
    assert loaded.caught_up_to > first_read
    assert late.items == ["late-article"] and set(readers) <= set(late.users)
    assert loaded.recommender.factors_of("item", "late-article") is not None


def _trainer(settings):
    from services.recommender.settings import RecommenderSettings
    from services.recommender.trainer import ProcessTrainer

    return ProcessTrainer(RecommenderSettings(_env_file=None, **settings.model_dump()))


def _retrain_in_child(trainer, settings):
    from services.recommender.settings import RecommenderSettings

    params = RecommenderSettings(_env_file=None).als_params()
    return trainer(None, params, gate_ratio=1.0, keep=3, due=lambda: "due")


def test_the_trainer_process_keeps_the_lock_the_gate_and_the_due_check(settings, seeded):
    """The scheduled retrain's child process: busy while another holds the lock, then a
    gated, active version, then "skipped" (asked once it holds the lock: nothing new)."""
    from services.recommender.model_store import TrainingBusy

    trainer, store = _trainer(settings), ModelStore(seeded)
    with store.training_lock():
        with pytest.raises(TrainingBusy, match="another worker is training"):
            asyncio.run(_retrain_in_child(trainer, settings))
    outcome = asyncio.run(_retrain_in_child(trainer, settings))
    assert (outcome.status, outcome.version, outcome.passed) == ("active", 1, True)
    assert outcome.metrics["holdout"]["served"]["ndcg@10"] > 0
    assert store.active().id == 1 and store.active().n_interactions == 30_000
    assert asyncio.run(_retrain_in_child(trainer, settings)).status == "skipped"


def test_a_cancelled_trainer_process_leaves_no_child_and_frees_the_lock(settings, seeded):
    trainer, store = _trainer(settings), ModelStore(seeded)

    def locked() -> bool:  # by this test's child (its sessions carry the test's client id)
        return settings.kafka_client_id in store.training_lock_holders()

    async def scenario():
        call = asyncio.create_task(_retrain_in_child(trainer, settings))
        deadline = time.monotonic() + 60
        while not await asyncio.to_thread(locked):  # the child is training
            assert time.monotonic() < deadline and not call.done()
            await asyncio.sleep(0.05)
        process = trainer.process
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call
        return process

    process = asyncio.run(scenario())
    assert process.returncode is not None
    deadline = time.monotonic() + 10
    while locked():  # the server notices the closed connection at once, or nearly
        assert time.monotonic() < deadline, "the dead trainer's lock was never released"
        time.sleep(0.1)
    with store.training_lock():  # free for the next trainer
        pass
    assert store.versions() == []  # nothing half-stored


def _stored_film(film, content=None, model=None) -> CatalogRow:
    """A film as a worker stores it (``content`` None: a worker without the encoder)."""
    item = to_item_event(film).data
    return CatalogRow(
        item_id=item.item_id, kind=item.kind, title=item.title, summary=item.summary,
        body=item.body, tags=tuple(item.tags), language=None, url=None,
        published_at=item.published_at, expires_at=None, hidden=False,
        content=content, content_model=model,
    )  # fmt: skip


def _content(engine) -> dict[str, tuple[list[float] | None, str | None]]:
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT item_id, content, content_model FROM items"))
        return {item: (content, model) for item, content, model in rows}


def test_train_embeds_the_catalog_items_without_the_current_encoders_content(settings, seeded):
    films = load_films()[:300]
    kept = np.zeros(384, dtype=np.float32)
    kept[0] = 1.0  # no text embeds to this: it shows whether an item was embedded again
    PostgresCatalog(seeded).write(
        [_stored_film(f) for f in films[:-2]]
        + [_stored_film(films[-2], kept, ENCODER), _stored_film(films[-1], kept, "older-encoder")]
    )
    trained = marquee(settings, "train", "--json")
    assert trained.returncode == 0, trained.stdout + trained.stderr
    assert json.loads(trained.stdout)["catalog_embedded"] == 299
    stored = _content(seeded)
    assert all(stored[f.item_id][1] == ENCODER for f in films)
    assert all(len(stored[f.item_id][0]) == 384 for f in films)
    assert stored[films[-2].item_id][0] == kept.tolist()  # the same encoder's: left alone
    assert stored[films[-1].item_id][0] != kept.tolist()  # another encoder's: replaced

    # The new version's content map is learnt from them as a worker loads it.
    catalog = PostgresCatalog(seeded)
    loaded = load_active(InteractionStore(seeded), ModelStore(seeded), 30 * 86_400, catalog)
    assert loaded.version.id == 1 and loaded.content_map is not None

    # Everything is current now: the next retrain embeds nothing.
    again = marquee(settings, "train")
    assert again.returncode == 0, again.stderr
    assert f"catalog: 0 of 300 items embedded with {ENCODER}" in again.stdout
    assert _content(seeded) == stored


def test_train_without_the_encoder_says_how_to_build_it(settings, seeded, tmp_path):
    PostgresCatalog(seeded).write([_stored_film(load_films()[0])])
    missing = {"MARQUEE_RECOMMENDER_CONTENT_MODEL_DIR": str(tmp_path / "none")}
    result = marquee(settings, "train", **missing)
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr.strip() == (
        "marquee: error: the catalog (1 items) needs the content encoder before training, "
        f"and there is none in {tmp_path / 'none'}: run `marquee encoder build`"
    )
    assert models(settings) == []
