"""Impressions and attribution on the real broker and Postgres: the recommender publishes
what it serves, and ``marquee serve feedback`` attributes the clicks that name it."""

from __future__ import annotations

import json
import os
import sys
import uuid
from collections import defaultdict
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text

from shared.events import (
    ImpressionEvent,
    InteractionEvent,
    RecommendationRequestEvent,
)
from shared.kafka.publisher import Publisher
from shared.kafka.records import Record
from shared.topics import full_name
from tests.integration.kafka_helpers import read_all
from tests.integration.stack_helpers import ROOT, marquee, seed_movielens
from tests.integration.worker_helpers import eventually, get, service_worker

FEEDBACK = [sys.executable, "-m", "shared.cli.main", "serve", "feedback"]
RECOMMENDER = [sys.executable, "-m", "shared.cli.main", "serve", "recommender"]
#: Short, so a click two minutes late is outside it.
WINDOW = 60
PYTHONPATH = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))


def feedback_worker(topics, tmp_path):
    return service_worker(
        topics,
        tmp_path,
        FEEDBACK,
        PYTHONPATH=PYTHONPATH,
        MARQUEE_FEEDBACK_ATTRIBUTION_WINDOW_SECONDS=str(WINDOW),
        MARQUEE_FEEDBACK_BATCH_SECONDS="0.05",
        MARQUEE_FEEDBACK_METRICS_REFRESH_SECONDS="1",
    )


def ctr(port: int) -> dict:
    status, body = get(port, "/metrics/ctr?window=1h")
    assert status == 200, body
    return json.loads(body)


def impression(impression_id: str, items: list[str], *, served_at: datetime, **data):
    return ImpressionEvent.create(
        {
            "impression_id": impression_id,
            "user_id": "reader-1",
            "items": [
                {"item_id": item, "position": n, "score": 1.0 / n}
                for n, item in enumerate(items, start=1)
            ],
            "strategy": "als",
            "model_version": 7,
            "surface": "home",
            **data,
        },
        source="urn:test:recommender",
        time=served_at,
    )


def click(item: str, impression_id: str | None = None, *, id: str | None = None, action="click"):
    data = {"user_id": "reader-1", "item_id": item, "action": action}
    if impression_id:
        data["impression_id"] = impression_id
    if action == "dwell":
        data["dwell_seconds"] = 30.0
    return InteractionEvent.create(data, source="urn:test:web", id=id)


def counted_in_postgres(engine) -> dict:
    with engine.connect() as conn:
        return {
            table: conn.execute(text(f"SELECT count(*) FROM {table}")).scalar_one()
            for table in ("feedback_impressions", "feedback_slots", "feedback_interactions")
        }


def test_clicks_are_attributed_once_and_ctr_matches_postgres(topics, engine, tmp_path):
    now = datetime.now(UTC)
    fresh, stale = f"imp-{uuid.uuid4().hex[:8]}", f"imp-{uuid.uuid4().hex[:8]}"
    with Publisher(topics) as publisher, feedback_worker(topics, tmp_path) as (_, port):
        for event in (
            impression(fresh, ["a", "b", "c"], served_at=now - timedelta(seconds=5)),
            # Served 2 minutes ago: a click now is outside the 60 s window.
            impression(stale, ["a", "b", "c"], served_at=now - timedelta(seconds=120)),
            click("b", fresh, id="click-1"),  # attributed, position 2
            click("b", fresh, id="click-1"),  # the same event redelivered: counted once
            click("b", fresh, id="click-2"),  # the same slot clicked again: one clicked slot
            click("b", fresh, action="like"),
            click("c", fresh, action="dwell"),
            click("a", stale),  # too late: organic
            click("z"),  # names no impression: organic
            click("z", fresh),  # an item the list did not show: organic
        ):
            publisher.publish_sync(event)
        # A broken impression goes to its DLQ, with the reason.
        publisher.publish_record(
            Record(full_name("impressions", topics.topic_prefix), b"reader-1", b"{not json", [])
        ).get(timeout=10)

        def settled():
            body = ctr(port)
            return body if body["organic_clicks"] == 3 and body["groups"] else None

        body = eventually(settled)
        assert body, ctr(port)
        (group,) = body["groups"]
        assert (group["model_version"], group["strategy"], group["surface"]) == (7, "als", "home")
        assert (group["lists"], group["impressions"], group["clicks"]) == (2, 6, 1)
        assert group["ctr"] == pytest.approx(1 / 6) and group["likes"] == 1
        assert group["dwell_seconds"] == 30.0
        low, high = group["ci95"]
        assert 0 < low < 1 / 6 < high < 1
        by_position = {p["position"]: p for p in body["positions"]}
        assert {n: p["clicks"] for n, p in by_position.items()} == {1: 0, 2: 1, 3: 0}
        assert {n: p["impressions"] for n, p in by_position.items()} == {1: 2, 2: 2, 3: 2}
        # What the endpoint says is what Postgres holds: 2 lists of 3 slots; 7 distinct
        # interactions (the redelivered click is one row).
        assert counted_in_postgres(engine) == {
            "feedback_impressions": 2,
            "feedback_slots": 6,
            "feedback_interactions": 7,
        }
        (letter,) = read_all(topics, "impressions.dlq", 1)
        assert b"not valid JSON" in letter.value or b"JSON" in letter.value

        # Prometheus series, bounded labels (recomputed every second here).
        series = b'marquee_feedback_clicks{model_version="7",strategy="als",surface="home"} 1.0'

        def exported():
            return series in get(port, "/metrics")[1]

        assert eventually(exported)

    # Restarted, the worker resumes after its committed offsets; a redelivery after the
    # restart changes nothing either.
    with Publisher(topics) as publisher, feedback_worker(topics, tmp_path) as (_, port):
        publisher.publish_sync(click("b", fresh, id="click-1"))
        publisher.publish_sync(click("y"))  # a marker: once counted, the duplicate was read

        body = eventually(lambda: (b := ctr(port))["organic_clicks"] == 4 and b)
        assert body, ctr(port)
        assert body["groups"][0]["clicks"] == 1
        assert counted_in_postgres(engine)["feedback_interactions"] == 8


@pytest.fixture
def recommender(topics, engine, tmp_path):
    seed_movielens(engine, 5_000)
    trained = marquee(topics, "train")
    assert trained.returncode == 0, trained.stdout + trained.stderr
    with service_worker(topics, tmp_path, RECOMMENDER) as (_, port):
        yield port


def test_every_answer_names_its_impression_and_the_impression_is_published(
    recommender, topics, tmp_path
):
    port = recommender
    status, body = get(port, "/users/1/recommendations?k=5&surface=home")
    assert status == 200, body
    answer = json.loads(body)
    (record,) = read_all(topics, "impressions", 1)
    published = ImpressionEvent.model_validate_json(record.value).data
    assert published.impression_id == answer["impression_id"]
    assert [(i.item_id, i.position) for i in published.items] == [
        (item["item_id"], n) for n, item in enumerate(answer["items"], start=1)
    ]
    assert (published.strategy, published.model_version, published.surface) == (
        answer["strategy"],
        answer["model_version"],
        "home",
    )
    assert record.key == b"1"

    # Over Kafka too.
    with Publisher(topics) as publisher:
        publisher.publish_sync(
            RecommendationRequestEvent.create({"request_id": "r-1", "user_id": "2", "k": 3})
        )
    (reply,) = read_all(topics, "recommendations", 1)
    replied = json.loads(reply.value)["data"]
    assert replied["impression_id"] and replied["impression_id"] != answer["impression_id"]
    ids = {
        ImpressionEvent.model_validate_json(r.value).data.impression_id
        for r in read_all(topics, "impressions", 2)
    }
    assert replied["impression_id"] in ids

    # A click naming it is attributed by the feedback service.
    with Publisher(topics) as publisher, feedback_worker(topics, tmp_path) as (_, feedback):
        first = answer["items"][0]["item_id"]
        publisher.publish_sync(click(first, answer["impression_id"]))

        def attributed():
            groups = ctr(feedback)["groups"]
            return [g for g in groups if g["clicks"]]

        (group,) = eventually(attributed, timeout=30)
        assert (group["strategy"], group["surface"], group["clicks"]) == (
            answer["strategy"],
            "home",
            1,
        )


def test_simulated_readers_ctr_per_strategy_matches_postgres(recommender, topics, engine, tmp_path):
    """Readers through the collector, clicks attributed: the endpoint's CTR per strategy
    is what the simulator sent and what Postgres holds."""
    from services.collector.store import AppStore

    source = "urn:sim:web"
    _, key = AppStore(engine).add("sim", ["marquee.interaction.v1"], source)
    collect = [sys.executable, "-m", "shared.cli.main", "serve", "collector"]
    with (
        service_worker(
            topics,
            tmp_path,
            collect,
            PYTHONPATH=PYTHONPATH,
            MARQUEE_COLLECTOR_KEYS_REFRESH_SECONDS="0.5",
        ) as (_, collector),
        feedback_worker(topics, tmp_path) as (_, feedback),
    ):
        simulated = marquee(
            topics,
            "simulate",
            "readers",
            "--key",
            "-",
            "--source",
            source,
            "--readers",
            "40",
            "--seed",
            "3",
            "--recommender",
            f"http://127.0.0.1:{recommender}",
            "--collector",
            f"http://127.0.0.1:{collector}",
            input=key + "\n",
            PYTHONPATH=PYTHONPATH,
        )
        assert simulated.returncode == 0, simulated.stdout + simulated.stderr
        sent = {
            line.split(":")[0]: int(line.split(" clicks")[0].rsplit(" ", 1)[1])
            for line in simulated.stdout.splitlines()
            if " clicks, CTR " in line
        }
        assert sum(sent.values()) > 0, simulated.stdout

        def settled():
            groups = ctr(feedback)["groups"]
            per_strategy = defaultdict(int)
            for g in groups:
                per_strategy[g["strategy"]] += g["clicks"]
            lists = sum(g["lists"] for g in groups)
            return groups if dict(per_strategy) == sent and lists == 40 else None

        groups = eventually(settled, timeout=60)
        assert groups, (ctr(feedback), sent)
        with engine.connect() as conn:
            stored = dict(
                conn.execute(
                    text(
                        "SELECT i.strategy, count(DISTINCT (f.impression_id, f.item_id))"
                        " FROM feedback_interactions f JOIN feedback_impressions i"
                        " USING (impression_id) WHERE f.action = 'click' GROUP BY i.strategy"
                    )
                ).all()
            )
        assert stored == {strategy: n for strategy, n in sent.items() if n}
