"""The catalog against the real broker and Postgres: names in answers, new items
recommendable by their content before anyone reads them, hidden items gone at once,
bad items in catalog.dlq."""

from __future__ import annotations

import json
import sys
import time
from datetime import UTC, datetime

import pytest
from kafka import KafkaProducer
from sqlalchemy import text

from shared.data.movielens import load_films, to_item_event
from shared.events import EventCodec, ItemEvent
from shared.kafka.client import client_options
from shared.kafka.publisher import Publisher
from tests.integration.kafka_helpers import read_all
from tests.integration.stack_helpers import marquee, seed_movielens
from tests.integration.worker_helpers import get, service_worker

SERVE = [sys.executable, "-m", "shared.cli.main", "serve", "recommender"]


def answer(port: int, path: str) -> dict:
    status, body = get(port, path)
    assert status == 200, body
    return json.loads(body)


def eventually(check, timeout: float = 20.0):
    deadline = time.monotonic() + timeout
    while not (result := check()):
        assert time.monotonic() < deadline, "did not happen in time"
        time.sleep(0.25)
    return result


@pytest.fixture
def served(topics, engine, tmp_path):
    """MovieLens's films in the catalog (through the topic), ratings stored, a model
    trained: the worker maps content to factors when it loads the version."""
    seed_movielens(engine, 30_000)
    films = load_films()
    with Publisher(topics) as pub:
        for film in films:
            pub.publish(to_item_event(film))
    env = {"MARQUEE_RECOMMENDER_MODEL_POLL_SECONDS": "1"}
    with service_worker(topics, tmp_path, SERVE, wait_for="/livez", **env) as (_, port):
        eventually(lambda: _stored_content(engine) == len(films), timeout=120)
        trained = marquee(topics, "train")
        assert trained.returncode == 0, trained.stdout + trained.stderr
        eventually(lambda: get(port, "/readyz")[0] == 200, timeout=60)
        yield port, topics, {f.item_id: f for f in films}


def _stored_content(engine) -> int:
    with engine.connect() as conn:
        return conn.execute(
            text("SELECT count(*) FROM items WHERE origin = 'catalog' AND content IS NOT NULL")
        ).scalar_one()


def item(item_id: str, title: str, tags: list[str], summary: str, **extra) -> ItemEvent:
    return ItemEvent.create(
        {
            "item_id": item_id,
            "kind": "film",
            "title": title,
            "tags": tags,
            "summary": summary,
            "published_at": datetime.now(UTC),
            **extra,
        },
        source="urn:test:newsroom",
    )


def test_the_catalog_is_served_by_name_and_by_content(served):
    port, topics, films = served
    body = answer(port, "/users/1/recommendations?k=10")
    assert body["strategy"] == "als"
    for shown in body["items"]:  # names instead of ids
        film = films[shown["item_id"]]
        assert shown["title"].startswith(film.title) and shown["kind"] == "film"

    # A new film like the user's favourite recommendation: recommendable before anyone
    # reads it, by its content alone.
    top = films[body["items"][0]["item_id"]]
    new = item(
        "new-film-1",
        f"{top.title}: the return",
        list(top.genres),
        f"{', '.join(top.genres)} sequel",
    )
    with Publisher(topics) as pub:
        pub.publish_sync(new)

    def recommended():
        found = answer(port, "/users/1/recommendations?k=30")["items"]
        return next((i for i in found if i["item_id"] == "new-film-1"), None)

    shown = eventually(recommended, timeout=10)
    assert shown["title"] == f"{top.title}: the return" and shown["kind"] == "film"
    similar = answer(port, "/items/new-film-1/similar?k=5")["items"]
    assert similar  # mapped factors give it neighbours too

    # Hidden: gone from every answer within a batch, without a retrain.
    with Publisher(topics) as pub:
        pub.publish_sync(
            item("new-film-1", new.data.title, new.data.tags, new.data.summary, hidden=True)
        )

    def gone() -> bool:
        users = answer(port, "/users/1/recommendations?k=200")["items"]
        popular = answer(port, "/items/popular?k=200")["items"]
        near = answer(port, f"/items/{body['items'][0]['item_id']}/similar?k=200")["items"]
        return all(i["item_id"] != "new-film-1" for i in users + popular + near)

    eventually(gone, timeout=5)

    # A malformed item goes to catalog.dlq with its reason; the worker goes on.
    producer = KafkaProducer(**client_options(topics))
    producer.send(f"{topics.topic_prefix}catalog", key=b"x", value=b'{"not": "an item"}')
    producer.flush()
    producer.close()
    (letter,) = read_all(topics, "catalog.dlq", expected=1, timeout_s=30)
    dead = EventCodec().decode(letter.value)
    assert dead.data.reason and get(port, "/readyz")[0] == 200
