"""Serving from the active model over HTTP, kept fresh by fold-in between retrains."""

from __future__ import annotations

import json
import sys
import time

import pytest
from sqlalchemy import text

from shared.events import InteractionEvent
from shared.kafka.publisher import Publisher
from tests.integration.stack_helpers import marquee, seed_movielens
from tests.integration.worker_helpers import get, service_worker

SERVE = [sys.executable, "-m", "shared.cli.main", "serve", "recommender"]


@pytest.fixture
def worker(topics, engine, tmp_path):
    seed_movielens(engine, 30_000)
    trained = marquee(topics, "train")
    assert trained.returncode == 0, trained.stdout + trained.stderr
    with service_worker(topics, tmp_path, SERVE, MARQUEE_RECOMMENDER_MODEL_POLL_SECONDS="1") as (
        _,
        port,
    ):
        yield port, topics, engine


def recommendations(port: int, user: str, **query) -> dict:
    qs = "&".join(f"{k}={v}" for k, v in query.items())
    status, body = get(port, f"/users/{user}/recommendations?{qs}")
    assert status == 200, body
    return json.loads(body)


def seen(engine, user: str) -> set[str]:
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT item_id FROM user_item WHERE user_id = :u"), {"u": user})
        return {r[0] for r in rows}


def test_endpoints_serve_the_active_model(worker):
    """One worker for the read-only checks (each worker start costs a retrain and seconds)."""
    port, _, engine = worker

    # A known user: ALS, never an item they have seen unless asked for.
    body = recommendations(port, "1", k=20)
    assert body["strategy"] == "als" and body["model_version"] == 1
    assert len(body["items"]) == 20
    assert not {i["item_id"] for i in body["items"]} & seen(engine, "1")
    with_seen = recommendations(port, "1", k=20, exclude_seen="false")
    assert {i["item_id"] for i in with_seen["items"]} & seen(engine, "1")

    # A user nobody has seen: the popular items.
    body = recommendations(port, "nobody-yet", k=10)
    status, popular = get(port, "/items/popular?k=10")
    assert body["strategy"] == "popularity"
    assert [i["item_id"] for i in body["items"]] == [
        i["item_id"] for i in json.loads(popular)["items"]
    ]

    # Clear errors, not 500s.
    status, body = get(port, "/items/no-such-item/similar")
    assert status == 404 and json.loads(body) == {"error": "unknown item 'no-such-item'"}
    status, body = get(port, "/users/1/recommendations?k=0")
    assert status == 400 and "k must be a whole number from 1 to 200" in json.loads(body)["error"]
    # What fuzzing found answering 500: each a 400 with one line saying what to send.
    for path, reason in [
        ("/users/1/recommendations?k=%C2%B2", "k must be a whole number"),  # k=²
        ("/items/popular?window=%C2%B2h", "window must look like 90s"),
        ("/items/popular?window=99999999999999999999d", "window must look like 90s"),
        ("/items/popular?window=1" + "0" * 300 + "s", "window must look like 90s"),
        ("/items/popular?window=367d", "at most 366 days"),
        ("/users/s1%00/recommendations", "user id must be 1 to 128 characters"),
        ("/items/popular?window=24h&kind=s1%00", "kind must be 1 to 64 characters"),
        ("/items/s1%00/similar", "item id must be 1 to 128 characters"),
    ]:
        status, body = get(port, path)
        assert status == 400 and reason in json.loads(body)["error"], (path, body)
    # Ids with braces are valid by the schema, so they can be asked for.
    status, body = get(port, "/users/%7Bu%7D/recommendations")
    assert status == 200 and json.loads(body)["user_id"] == "{u}"
    status, body = get(port, "/items/%7Bi%7D/similar")
    assert status == 404 and json.loads(body) == {"error": "unknown item '{i}'"}
    status, body = get(port, "/items/50/similar?k=5")
    assert status == 200 and len(json.loads(body)["items"]) == 5
    status, body = get(port, "/models")
    assert status == 200 and json.loads(body)["versions"][0]["status"] == "active"


def test_clicks_change_recommendations_within_seconds_without_retrain(worker):
    port, settings, _ = worker
    before = recommendations(port, "fresh-reader", k=10)
    assert before["strategy"] == "popularity"
    with Publisher(settings) as pub:
        for item in ("50", "172", "181"):  # Star Wars and its sequels in MovieLens
            pub.publish_sync(
                InteractionEvent.create(
                    {"user_id": "fresh-reader", "item_id": item, "action": "like"}
                )
            )
    # The three likes may land in different batches, each folded in after it is stored:
    # wait until the answer reflects all of them (a seen item left in would time out).
    liked = {"50", "172", "181"}
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        after = recommendations(port, "fresh-reader", k=10)
        if after["strategy"] == "als" and not liked & {i["item_id"] for i in after["items"]}:
            break
        time.sleep(0.2)
    assert after["strategy"] == "als"
    assert not liked & {i["item_id"] for i in after["items"]}
    assert after["items"] != before["items"]
    assert after["model_version"] == 1  # no retrain happened
