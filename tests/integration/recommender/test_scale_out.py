"""Several workers in one consumer group: any worker answers any user alike, new items get
factors before a retrain, fold-ins live in Postgres, and requests are answered over Kafka."""

from __future__ import annotations

import sys
import time
from contextlib import ExitStack

import pytest
from kafka import KafkaProducer
from sqlalchemy import text

from services.recommender.model_store import FOLD_IN_IDX_BASE
from shared.events import EventCodec, InteractionEvent
from shared.events.models import RecommendationRequestEvent
from shared.kafka.client import client_options
from shared.kafka.publisher import Publisher
from shared.topics import full_name
from tests.integration.kafka_helpers import group_partitions, read_all
from tests.integration.stack_helpers import marquee, seed_movielens
from tests.integration.worker_helpers import answer, eventually, service_worker

SERVE = [sys.executable, "-m", "shared.cli.main", "serve", "recommender"]
READERS = [str(u) for u in range(1, 21)]  # MovieLens users with trained factors


@pytest.fixture
def two_workers(topics, engine, tmp_path):
    seed_movielens(engine, 30_000)
    trained = marquee(topics, "train")
    assert trained.returncode == 0, trained.stdout + trained.stderr
    # Generated content registers its item before anyone reads it (the generator's job).
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO items (item_id, kind, origin) VALUES ('article-1', 'article', 'generated')"
            )
        )
    env = {
        "MARQUEE_RECOMMENDER_MODEL_POLL_SECONDS": "1",
        "MARQUEE_RECOMMENDER_FOLD_IN_SYNC_SECONDS": "0.5",
    }
    with ExitStack() as stack:
        for name in ("a", "b"):
            (tmp_path / name).mkdir()
        ports = [
            stack.enter_context(service_worker(topics, tmp_path / name, SERVE, **env))[1]
            for name in ("a", "b")
        ]
        yield ports, topics, engine


def test_every_worker_serves_fold_ins_and_new_items_alike(two_workers, admin):
    ports, settings, engine = two_workers

    # The group really is shared: each worker holds some of the interactions partitions.
    def split():
        found = interaction_partitions(admin, settings)
        return len(found) == 2 and all(found) and found

    shared_out = eventually(split)
    assert shared_out and sorted(sum(shared_out, [])) == list(range(6)), shared_out

    liked = {"50", "172", "181"}
    with Publisher(settings) as pub:
        for item in sorted(liked):
            pub.publish_sync(
                InteractionEvent.create(
                    {"user_id": "fresh-reader", "item_id": item, "action": "like"}
                )
            )
        for user in READERS[:10]:
            pub.publish_sync(
                InteractionEvent.create({"user_id": user, "item_id": "article-1", "action": "like"})
            )

    # Whichever worker ingested them, both answer the same, with every like folded in.
    def alike():
        bodies = [answer(p, "/users/fresh-reader/recommendations?k=10") for p in ports]
        items = [[i["item_id"] for i in b["items"]] for b in bodies]
        settled = all(
            b["strategy"] == "als" and not liked & set(i)
            for b, i in zip(bodies, items, strict=True)
        )
        return settled and items[0] == items[1] and bodies

    bodies = eventually(alike)
    assert bodies, [answer(p, "/users/fresh-reader/recommendations?k=10") for p in ports]
    assert bodies[0]["model_version"] == 1  # no retrain

    # The new article has factors (partial_fit_items) and reaches similar readers on both.
    def offered():
        found = [answer(p, "/users/15/recommendations?k=5&kind=article") for p in ports]
        return all([i["item_id"] for i in b["items"]] == ["article-1"] for b in found)

    assert eventually(offered)

    # The fold-ins live in Postgres under the active version (a restarted worker loads them).
    with engine.connect() as conn:
        user_idx = conn.execute(
            text(
                "SELECT idx FROM user_factors WHERE model_version = 1 AND external_id = 'fresh-reader'"
            )
        ).scalar_one()
        item_rows = conn.execute(
            text(
                "SELECT count(*) FROM item_factors WHERE model_version = 1 AND external_id = 'article-1'"
            )
        ).scalar_one()
    assert user_idx >= FOLD_IN_IDX_BASE and item_rows == 1


def interaction_partitions(admin, settings) -> list[list[int]]:
    """Per member of the recommender's ingest group, its partitions of ``interactions``."""
    return group_partitions(
        admin,
        f"{settings.topic_prefix}marquee-recommender-ingest",
        full_name("interactions", settings.topic_prefix),
    )


def test_requests_over_kafka_get_one_reply_each(two_workers):
    _, settings, _ = two_workers
    users = ["1", "2", "nobody-yet"]
    requests = [
        RecommendationRequestEvent.create({"request_id": f"req-{u}", "user_id": u, "k": 5})
        for u in users
    ]
    with Publisher(settings) as pub:
        for request in requests:
            pub.publish_sync(request)
    producer = KafkaProducer(**client_options(settings))
    producer.send(
        full_name("recommendation-requests", settings.topic_prefix), b"{not json", key=b"x"
    )
    producer.flush()
    producer.close()

    replies = [EventCodec().decode(r.value).data for r in read_all(settings, "recommendations", 3)]
    assert sorted(r.request_id for r in replies) == [f"req-{u}" for u in users]
    by_user = {r.user_id: r for r in replies}
    assert by_user["1"].strategy == "als" and len(by_user["1"].items) == 5
    assert by_user["nobody-yet"].strategy == "popularity" and by_user["1"].model_version == 1
    letters = [
        EventCodec().decode(r.value).data
        for r in read_all(settings, "recommendation-requests.dlq", 1)
    ]
    assert len(letters) == 1 and "JSON" in letters[0].error
    time.sleep(2)  # a second reply per request would have arrived by now
    assert len(read_all(settings, "recommendations", 4, timeout_s=3)) == 3
