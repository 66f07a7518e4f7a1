"""The catalog against the real broker and Postgres: names in answers (and in `marquee
recommend`), new items recommendable by their content before anyone reads them, hidden
items gone at once, bad items in catalog.dlq, a per-tag cap on request (HTTP and Kafka) and
old news ranked below fresh."""

from __future__ import annotations

import json
import sys
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
from kafka import KafkaProducer
from sqlalchemy import text

from shared.data.movielens import load_films, to_item_event
from shared.events import EventCodec, ItemEvent, RecommendationRequestEvent
from shared.kafka.client import client_options
from shared.kafka.publisher import Publisher
from tests.integration.kafka_helpers import read_all
from tests.integration.stack_helpers import marquee, seed_movielens
from tests.integration.worker_helpers import answer, eventually, get, service_worker

SERVE = [sys.executable, "-m", "shared.cli.main", "serve", "recommender"]


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
        assert eventually(lambda: _stored_content(engine) == len(films), timeout=120)
        trained = marquee(topics, "train")
        assert trained.returncode == 0, trained.stdout + trained.stderr
        assert eventually(lambda: get(port, "/readyz")[0] == 200, timeout=60)
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
    # `marquee recommend` names them as the API does.
    cli = marquee(topics, "recommend", "1", "-k", "10")
    assert cli.returncode == 0, cli.stderr
    for shown, line in zip(body["items"], cli.stdout.splitlines()[1:], strict=True):
        assert line.split()[1] == shown["item_id"], cli.stdout
        assert line.endswith(f"  [film] {shown['title']}"), cli.stdout

    # A cap of one film per genre (the films' tags) on request; the uncapped list repeats one.
    def most_per_genre(found: dict) -> int:
        genres = Counter(g for i in found["items"] for g in films[i["item_id"]].genres)
        return max(genres.values())

    capped = answer(port, "/users/1/recommendations?k=10&max_per_tag=1")
    assert most_per_genre(body) > 1 and capped["items"] and most_per_genre(capped) == 1
    status, error = get(port, "/users/1/recommendations?max_per_tag=-1")
    assert status == 400 and "max_per_tag must be a whole number from 0 to 200" in str(error)
    # The same cap on /items/popular (from the model, or counted over a window) ...
    for path in ("/items/popular?k=10", "/items/popular?k=10&window=366d"):
        popular, one_each = answer(port, path), answer(port, f"{path}&max_per_tag=1")
        assert most_per_genre(popular) > 1, path
        assert len(one_each["items"]) == 10 and most_per_genre(one_each) == 1, path
    status, error = get(port, "/items/popular?max_per_tag=201")
    assert status == 400 and "max_per_tag must be a whole number from 0 to 200" in str(error)
    # ... and on a request over Kafka.
    with Publisher(topics) as pub:
        for cap in (0, 1):
            request = {"request_id": f"cap-{cap}", "user_id": "1", "k": 10, "max_per_tag": cap}
            pub.publish_sync(RecommendationRequestEvent.create(request))
    replies = {
        reply.request_id: reply.model_dump()
        for reply in (
            EventCodec().decode(r.value).data for r in read_all(topics, "recommendations", 2)
        )
    }
    assert replies["cap-0"]["items"] == body["items"] and most_per_genre(replies["cap-1"]) == 1

    # New articles nobody has read, one like each user's favourite recommendation and one
    # like their 200th: ranked by content alone (kind=news holds only
    # them), the first should rank above the second. Content is evidence, not certainty (offline,
    # 35 of 40 users): at least 7 of 10 users.
    users = [
        str(u)
        for u in range(1, 200)
        if answer(port, f"/users/{u}/recommendations?k=1")["strategy"] == "als"
    ][:10]
    pairs = {}
    with Publisher(topics) as pub:
        for user in users:
            ranked = answer(port, f"/users/{user}/recommendations?k=200&exclude_seen=false")
            like = films[ranked["items"][0]["item_id"]]
            unlike = films[ranked["items"][-1]["item_id"]]
            for tag, film in (("like", like), ("unlike", unlike)):
                pub.publish(
                    item(
                        f"news-{user}-{tag}",
                        f"{film.title}: the return",
                        list(film.genres),
                        f"{', '.join(film.genres)} sequel",
                        kind="news",
                    )
                )
            pairs[user] = like.title
        pub.flush()

    def ranked_news(user: str) -> list[str]:
        found = answer(port, f"/users/{user}/recommendations?k=20&kind=news")["items"]
        return [i["item_id"] for i in found]

    assert eventually(lambda: all(len(ranked_news(u)) == 20 for u in users), timeout=30)
    orders = {u: ranked_news(u) for u in users}
    right = [
        u
        for u, order in orders.items()
        if order.index(f"news-{u}-like") < order.index(f"news-{u}-unlike")
    ]
    assert len(right) >= 7, orders
    shown = answer(port, f"/users/{right[0]}/recommendations?k=20&kind=news")["items"]
    mine = next(i for i in shown if i["item_id"] == f"news-{right[0]}-like")
    assert mine["title"] == f"{pairs[right[0]]}: the return" and mine["kind"] == "news"
    new_id = f"news-{right[0]}-like"
    assert answer(port, f"/items/{new_id}/similar?k=5")["items"]  # neighbours by content

    # Hidden: gone from every answer within a batch, without a retrain.
    user = right[0]
    with Publisher(topics) as pub:
        pub.publish_sync(item(new_id, "Withdrawn", [], "", kind="news", hidden=True))

    def gone() -> bool:
        mine = answer(port, f"/users/{user}/recommendations?k=200")["items"]
        news = answer(port, f"/users/{user}/recommendations?k=20&kind=news")["items"]
        popular = answer(port, "/items/popular?k=200")["items"]
        near = answer(port, f"/items/news-{user}-unlike/similar?k=200")["items"]
        return all(i["item_id"] != new_id for i in mine + news + popular + near)

    assert eventually(gone, timeout=5)

    # A malformed item goes to catalog.dlq with its reason; the worker goes on.
    producer = KafkaProducer(**client_options(topics))
    producer.send(f"{topics.topic_prefix}catalog", key=b"x", value=b'{"not": "an item"}')
    producer.flush()
    producer.close()
    (letter,) = read_all(topics, "catalog.dlq", expected=1, timeout_s=30)
    dead = EventCodec().decode(letter.value)
    assert dead.data.error_class == "InvalidEvent" and "missing field 'type'" in dead.data.error
    assert get(port, "/readyz")[0] == 200

    # Two news items alike but for their age (so alike in mapped factors): the default
    # freshness prior (news: 12 h half-life) ranks the one published three days ago lower.
    with Publisher(topics) as pub:
        for item_id, age in (("news-old", timedelta(days=3)), ("news-fresh", timedelta())):
            published = datetime.now(UTC) - age
            pub.publish(
                item(
                    item_id,
                    "Harbour reopens",
                    ["ferries"],
                    "After the storm",
                    kind="news",
                    published_at=published,
                )
            )
        pub.flush()

    def twins() -> dict[str, dict]:
        found = answer(port, f"/users/{user}/recommendations?k=200&kind=news")["items"]
        return {i["item_id"]: i | {"rank": n} for n, i in enumerate(found)}

    assert eventually(lambda: {"news-old", "news-fresh"} <= twins().keys(), timeout=30)
    (twin,) = answer(port, "/items/news-old/similar?k=1")["items"]
    assert twin["item_id"] == "news-fresh" and twin["score"] > 0.999, twin
    old, fresh = twins()["news-old"], twins()["news-fresh"]
    assert fresh["rank"] < old["rank"] and fresh["score"] > old["score"], json.dumps([old, fresh])


def test_a_model_trained_before_the_catalog_maps_new_items_once_content_arrives(
    topics, engine, tmp_path
):
    """The version loads with no content in the catalog (so no content map); the films and
    a new article arrive afterwards: the worker learns the map then, and the article is
    recommendable by its content without waiting for the next version."""
    seed_movielens(engine, 30_000)
    trained = marquee(topics, "train")
    assert trained.returncode == 0, trained.stdout + trained.stderr
    env = {"MARQUEE_RECOMMENDER_MODEL_POLL_SECONDS": "1"}
    with service_worker(topics, tmp_path, SERVE, **env) as (_, port):
        assert answer(port, "/users/1/recommendations?k=5")["strategy"] == "als"
        films = load_films()
        with Publisher(topics) as pub:
            for film in films:
                pub.publish(to_item_event(film))
            sequel = item(
                "news-sequel",
                "Star Wars: the return",
                ["Action", "Sci-Fi"],
                "Action, Sci-Fi space opera",
                kind="news",
            )
            pub.publish(sequel)
            pub.flush()

        def news() -> list[dict]:
            return answer(port, "/users/1/recommendations?k=5&kind=news")["items"]

        found = eventually(news, timeout=120)
        assert [i["item_id"] for i in found] == ["news-sequel"], found
        assert found[0]["title"] == "Star Wars: the return" and found[0]["kind"] == "news"
    assert _stored_content(engine) == len(films) + 1
