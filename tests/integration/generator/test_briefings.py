"""Digests and grounded answers over the real broker and Postgres: the generator asks a
real recommender worker over Kafka, reads the catalog table, and writes with the default
model; a recommender that does not answer gets a digest one error reply naming it."""

from __future__ import annotations

import json
import sys
import time
from datetime import UTC, datetime

import pytest
from sqlalchemy import text

from shared.data.movielens import load_films
from shared.events import EventCodec
from shared.events.models import ContentRequestEvent
from shared.kafka.publisher import Publisher
from tests.integration.kafka_helpers import read_all
from tests.integration.stack_helpers import marquee, seed_movielens
from tests.integration.worker_helpers import get, service_worker

GENERATOR = [sys.executable, "-m", "shared.cli.main", "serve", "generator"]
RECOMMENDER = [sys.executable, "-m", "shared.cli.main", "serve", "recommender"]
ENV = {"MARQUEE_KAFKA_SESSION_TIMEOUT_SECONDS": "6"}

NEWS = {
    "bridge": (
        "Harbour bridge closes for repairs",
        "The harbour bridge shuts for six weeks "
        "while engineers replace its cables; ferries run extra crossings.",
    ),
    "orchestra": (
        "City orchestra plays free concerts",
        "The city orchestra gives free summer concerts in the park every Sunday evening.",
    ),
    "tram": (
        "Council approves the new tram line",
        "The council voted for a tram line from "
        "the station to the university, to open in three years.",
    ),
}


def request(request_id: str, kind: str, **fields) -> ContentRequestEvent:
    data = {"request_id": request_id, "kind": kind, "max_new_tokens": 24, "temperature": 0}
    return ContentRequestEvent.create(data | fields)


def replies(settings, expected: int, timeout_s: float = 180) -> dict:
    records = read_all(settings, "content-generated", expected, timeout_s=timeout_s)
    out: dict[str, list] = {}
    for record in records:
        reply = EventCodec().decode(record.value).data
        out.setdefault(reply.request_id, []).append(reply)
    return out


def describe_films(engine) -> None:
    """The seeded items' titles and summaries, as the recommender stores the catalog."""
    films = {f.item_id: f for f in load_films()}
    with engine.begin() as conn:
        ids = [r[0] for r in conn.execute(text("SELECT item_id FROM items"))]
        for item_id in ids:
            f = films[item_id]
            conn.execute(
                text("UPDATE items SET title = :t, summary = :s WHERE item_id = :i"),
                {"t": f"{f.title} ({f.year})", "s": ", ".join(f.genres), "i": item_id},
            )


def add_news(engine) -> None:
    from services.generator.settings import GeneratorSettings
    from shared.embedding import Encoder

    encoder = Encoder(GeneratorSettings(_env_file=None).generator_content_model_dir, threads=1)
    vectors = encoder.encode([f"{t}. {s}" for t, s in NEWS.values()])
    with engine.begin() as conn:
        for (item_id, (title, summary)), vector in zip(NEWS.items(), vectors, strict=True):
            conn.execute(
                text(
                    "INSERT INTO items (item_id, kind, title, summary, published_at, content,"
                    " content_model) VALUES (:i, 'article', :t, :s, :p, :c, 'test')"
                ),
                {
                    "i": item_id,
                    "t": title,
                    "s": summary,
                    "p": datetime.now(UTC),
                    "c": [float(x) for x in vector],
                },
            )


@pytest.fixture
def lone_generator(topics, engine, tmp_path):
    """The generator with no recommender running, and a few news items in the catalog."""
    add_news(engine)
    with service_worker(
        topics, tmp_path, GENERATOR, MARQUEE_GENERATOR_RECOMMENDER_TIMEOUT_SECONDS="3", **ENV
    ):
        yield topics


def test_a_digest_without_a_recommender_gets_one_error_naming_it(lone_generator):
    settings = lone_generator
    with Publisher(settings) as pub:
        pub.publish_sync(request("digest-1", "digest", user_id="u1"))
    got = replies(settings, 1)
    (reply,) = got["digest-1"]
    assert reply.status == "error" and "the recommender did not answer within 3 s" in reply.error
    time.sleep(4)
    assert len(replies(settings, 2, timeout_s=3)["digest-1"]) == 1  # exactly one reply


def test_grounded_answers_cite_the_catalog_or_say_it_has_nothing(lone_generator):
    settings = lone_generator
    with Publisher(settings) as pub:
        pub.publish_sync(
            request("ask-1", "assistant", prompt="How long will the harbour bridge be closed?")
        )
        pub.publish_sync(
            request("ask-2", "assistant", prompt="What is a good recipe for lemon cake?")
        )
    got = replies(settings, 2)
    about, nothing = got["ask-1"][0], got["ask-2"][0]
    assert about.status == "ok" and about.item_ids and about.item_ids[0] == "bridge"
    assert about.completion_tokens > 0
    assert nothing.status == "ok" and nothing.item_ids == []
    assert "nothing in the catalog" in nothing.text


@pytest.fixture
def recommender_and_generator(topics, engine, tmp_path):
    seed_movielens(engine, 30_000)
    describe_films(engine)
    trained = marquee(topics, "train")
    assert trained.returncode == 0, trained.stdout + trained.stderr
    for name in ("recommender", "generator"):
        (tmp_path / name).mkdir()
    with (
        service_worker(
            topics,
            tmp_path / "recommender",
            RECOMMENDER,
            MARQUEE_RECOMMENDER_MODEL_POLL_SECONDS="1",
        ) as (_, port),
        service_worker(
            topics,
            tmp_path / "generator",
            GENERATOR,
            MARQUEE_GENERATOR_RECOMMENDER_TIMEOUT_SECONDS="60",
            **ENV,
        ),
    ):
        yield topics, engine, port


def recommended(port: int, user: str, k: int) -> list[str]:
    status, body = get(port, f"/users/{user}/recommendations?k={k}")
    assert status == 200, body
    return [item["item_id"] for item in json.loads(body)["items"]]


def test_two_readers_get_briefings_of_their_own_recommendations(recommender_and_generator):
    settings, _, port = recommender_and_generator
    users = ["1", "2"]
    with Publisher(settings) as pub:
        for user in users:
            pub.publish_sync(request(f"brief-{user}", "digest", user_id=user, max_items=3))
    got = replies(settings, len(users))
    cited = {}
    for user in users:
        (reply,) = got[f"brief-{user}"]
        assert reply.status == "ok", reply.error
        assert reply.text and reply.completion_tokens > 0
        assert reply.item_ids and len(reply.item_ids) <= 3
        assert set(reply.item_ids) <= set(recommended(port, user, 20))
        cited[user] = reply.item_ids
    assert cited["1"] != cited["2"]
