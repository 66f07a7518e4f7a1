"""The collector as a real worker (`marquee serve collector`) on the real broker and Postgres:
a browser's preflight and beacon, keys, types, limits and a batch with one bad event."""

from __future__ import annotations

import http.client
import json
import sys
import uuid
from datetime import UTC, datetime

import pytest

from services.collector.store import AppStore
from tests.integration.kafka_helpers import read_all, record_count
from tests.integration.stack_helpers import ROOT, marquee
from tests.integration.worker_helpers import eventually, service_worker

ORIGIN = "https://news.example"
SOURCE = "urn:news:web"
SERVE = [sys.executable, "-m", "shared.cli.main", "serve", "collector"]


def event(n: int = 0, *, source: str = SOURCE, type: str = "marquee.interaction.v1", **data):
    return {
        "specversion": "1.0",
        "id": f"ev-{uuid.uuid4().hex[:8]}-{n}",
        "source": source,
        "type": type,
        "time": datetime.now(UTC).isoformat(),
        "data": {"user_id": f"u{n}", "item_id": "article-42", "action": "view", **data},
    }


def call(port, method, path, body=None, headers=None):
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=15)
    try:
        raw = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
        connection.request(method, path, body=raw, headers=headers or {})
        response = connection.getresponse()
        data = response.read()
        parsed = (
            json.loads(data) if data and "json" in response.getheader("Content-Type", "") else data
        )
        return response.status, dict(response.getheaders()), parsed
    finally:
        connection.close()


def bearer(key, media="application/cloudevents+json"):
    return {"Authorization": f"Bearer {key}", "Content-Type": media}


@pytest.fixture
def collector(topics, engine, tmp_path):
    """``(port, keys)``: a collector worker, an app allowed interactions from SOURCE, and a
    second app for the flood (its own bucket)."""
    store = AppStore(engine)
    keys = {
        "web": store.add("web", ["marquee.interaction.v1"], SOURCE)[1],
        "flood": store.add("flood", ["marquee.interaction.v1"], SOURCE)[1],
    }
    env = {
        "MARQUEE_COLLECTOR_CORS_ORIGINS": ORIGIN,
        "MARQUEE_COLLECTOR_MAX_BATCH_EVENTS": "10",
        "MARQUEE_COLLECTOR_MAX_REQUEST_BYTES": "20000",
        "MARQUEE_COLLECTOR_RATE_PER_SECOND": "5",
        "MARQUEE_COLLECTOR_RATE_BURST": "30",
        "MARQUEE_COLLECTOR_KEYS_REFRESH_SECONDS": "0.5",
        "PYTHONPATH": str(ROOT),
    }
    with service_worker(topics, tmp_path, SERVE, **env) as (_, port):
        yield port, keys


def test_a_browser_preflights_then_beacons_and_the_event_is_on_the_topic(collector, topics):
    port, keys = collector
    status, headers, _ = call(
        port,
        "OPTIONS",
        "/v1/events",
        headers={
            "Origin": ORIGIN,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type",
        },
    )
    assert status == 204
    assert headers["Access-Control-Allow-Origin"] == ORIGIN
    assert "POST" in headers["Access-Control-Allow-Methods"]
    assert "Content-Type" in headers["Access-Control-Allow-Headers"]

    sent = event(1, action="click")
    status, headers, body = call(
        port,
        "POST",
        f"/v1/events?key={keys['web']}",
        json.dumps([sent]).encode(),  # what sendBeacon sends: a text/plain Blob
        {"Origin": ORIGIN, "Content-Type": "text/plain;charset=UTF-8"},
    )
    assert status == 200, body
    assert headers["Access-Control-Allow-Origin"] == ORIGIN
    assert body["results"] == [{"index": 0, "id": sent["id"], "status": "accepted", "code": 202}]
    # Confirmed by the broker before the answer: it is on the topic now.
    (record,) = read_all(topics, "interactions", expected=1)
    assert json.loads(record.value)["id"] == sent["id"] and record.key == b"u1"

    # Another site's page cannot beacon with the key, preflight or not.
    other = {"Origin": "https://evil.example", "Content-Type": "text/plain"}
    assert call(port, "POST", f"/v1/events?key={keys['web']}", [event(2)], other)[0] == 403
    assert call(port, "OPTIONS", "/v1/events", headers={"Origin": "https://evil.example"})[0] == 403

    status, headers, script = call(port, "GET", "/v1/marquee.js")
    assert status == 200 and headers["Content-Type"].startswith("text/javascript")
    assert "max-age" in headers["Cache-Control"] and b"sendBeacon" in script


def test_keys_types_limits_and_a_batch_with_one_bad_event(collector, topics):
    port, keys = collector
    one = event(0)
    assert (
        call(port, "POST", "/v1/events", one, {"Content-Type": "application/cloudevents+json"})[0]
        == 401
    )
    wrong = keys["web"][:-4] + "AAAA"
    status, headers, body = call(port, "POST", "/v1/events", one, bearer(wrong))
    assert status == 401 and "marquee apps add" in body["error"]
    # ?key= is for beacons only: a key in a URL of any other request is refused.
    status, _, _ = call(
        port,
        "POST",
        f"/v1/events?key={keys['web']}",
        one,
        {"Content-Type": "application/cloudevents+json"},
    )
    assert status == 401

    status, _, body = call(
        port, "POST", "/v1/events", event(0, type="marquee.item.v1"), bearer(keys["web"])
    )
    assert status == 403 and "may send marquee.interaction.v1" in body["results"][0]["reason"]
    status, _, body = call(
        port, "POST", "/v1/events", event(0, source="urn:other"), bearer(keys["web"])
    )
    assert status == 403 and "urn:news:web" in body["results"][0]["reason"]

    batch_media = "application/cloudevents-batch+json"
    status, _, body = call(
        port, "POST", "/v1/events", [event(n) for n in range(11)], bearer(keys["web"], batch_media)
    )
    assert status == 413 and "limit is 10" in body["error"]
    huge = [event(n, item_id="x" * 120) for n in range(10)]
    huge[0]["data"]["item_id"] = "y" * 128
    big = json.dumps(huge).encode() + b" " * 20_000
    status, _, body = call(port, "POST", "/v1/events", big, bearer(keys["web"], batch_media))
    assert status == 413 and "MARQUEE_COLLECTOR_MAX_REQUEST_BYTES" in body["error"]

    good = [event(n) for n in range(4)]
    bad = event(9, action="blink")
    status, _, body = call(
        port,
        "POST",
        "/v1/events",
        [good[0], good[1], bad, good[2], good[3]],
        bearer(keys["web"], batch_media),
    )
    assert status == 200, body
    assert (body["accepted"], body["rejected"], body["failed"]) == (4, 1, 0)
    (refused,) = [r for r in body["results"] if r["status"] != "accepted"]
    assert (refused["index"], refused["id"], refused["code"]) == (2, bad["id"], 400)
    assert "data.action" in refused["reason"]
    assert eventually(lambda: record_count(topics, "interactions") == 4)

    # A flood: the burst (30 events) passes, then 429 with Retry-After until tokens return.
    statuses = []
    for _ in range(8):
        status, headers, _ = call(
            port,
            "POST",
            "/v1/events",
            [event(n) for n in range(10)],
            bearer(keys["flood"], batch_media),
        )
        statuses.append(status)
        if status == 429:
            assert int(headers["Retry-After"]) >= 1
            break
    assert statuses[:3] == [200, 200, 200] and statuses[-1] == 429, statuses
    # Per app: the other key is not slowed down by the flood.
    assert call(port, "POST", "/v1/events", event(5), bearer(keys["web"]))[0] == 202


def test_apps_are_added_listed_and_revoked_from_the_cli(collector, topics):
    port, _ = collector
    added = marquee(
        topics,
        "apps",
        "add",
        "mobile",
        "--types",
        "marquee.interaction.v1",
        "--source",
        "urn:news:ios",
    )
    assert added.returncode == 0, added.stderr
    key = added.stdout.split("store it now; only its hash is kept): ")[1].strip()
    assert key.startswith("mqk_")
    listed = marquee(topics, "apps", "list")
    assert "mobile" in listed.stdout and key not in listed.stdout and "active" in listed.stdout

    mine = event(0, source="urn:news:ios")
    assert eventually(lambda: call(port, "POST", "/v1/events", mine, bearer(key))[0] == 202, 10)
    assert marquee(topics, "apps", "revoke", "mobile").returncode == 0
    assert eventually(
        lambda: (
            call(port, "POST", "/v1/events", event(1, source="urn:news:ios"), bearer(key))[0] == 401
        ),
        10,
    )
    again = marquee(topics, "apps", "revoke", "mobile")
    assert again.returncode == 2 and "no active app named 'mobile'" in again.stderr
    refused = marquee(
        topics, "apps", "add", "ops", "--types", "marquee.heartbeat.v1", "--source", "x"
    )
    assert refused.returncode == 2 and "only from Marquee's own services" in refused.stderr
