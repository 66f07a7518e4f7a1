"""The collector's request policy end to end, with a fake publisher (no broker, no web)."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime

from services.collector.cors import CorsPolicy
from services.collector.gateway import Gateway, Limits
from services.collector.keys import App, KeyRing, key_id_of, key_sha256, new_key
from services.collector.ratelimit import RateLimiter
from shared.events import EventCodec
from shared.kafka.publisher import FAILED, BatchReport, Outcome

KEY = new_key()[1]
APP = App("web", key_id_of(KEY), key_sha256(KEY), frozenset({"marquee.interaction.v1"}), "urn:w")
BATCH = "application/cloudevents-batch+json"


def event(n: int, **data) -> dict:
    return {
        "specversion": "1.0",
        "id": f"e{n}",
        "source": "urn:w",
        "type": "marquee.interaction.v1",
        "time": datetime.now(UTC).isoformat(),
        "data": {"user_id": "u", "item_id": "i", "action": "view", **data},
    }


def gateway(fail: bool = False, **limits) -> tuple[Gateway, list]:
    published: list = []

    def publish_many(events):
        published.extend(events)
        status = FAILED if fail else "accepted"
        return BatchReport(tuple(Outcome(n, e.id, status) for n, e in enumerate(events)))

    g = Gateway(
        keys=KeyRing([APP]),
        cors=CorsPolicy(["https://news.example"]),
        limiter=RateLimiter(limits.get("rate", 100), limits.get("burst", 100)),
        codec=EventCodec(),
        limits=Limits(max_events=10, max_bytes=10_000, confirm_timeout=1),
    )
    g.publish_many = publish_many
    return g, published


def post(g: Gateway, body, media=BATCH, key=KEY, query_key=None, origin=None):
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()

    async def read(limit: int) -> bytes:
        return raw[: limit + 1]

    return asyncio.run(
        g.events(
            origin=origin,
            content_type=media,
            authorization=f"Bearer {key}" if key else None,
            query_key=query_key,
            content_length=len(raw),
            read=read,
        )
    )


def test_a_batch_publishes_the_admitted_and_names_each_refused_one():
    g, published = gateway()
    other_type = event(2) | {"type": "marquee.item.v1"}
    reply = post(g, [event(0), event(1, action="blink"), other_type, event(3) | {"source": "x"}])
    assert reply.status == 200 and [e.id for e in published] == ["e0"]
    codes = [(r["index"], r["id"], r["status"], r["code"]) for r in reply.body["results"]]
    assert codes == [
        (0, "e0", "accepted", 202),
        (1, "e1", "rejected", 400),
        (2, "e2", "rejected", 403),
        (3, "e3", "rejected", 403),
    ]
    assert reply.headers["Cache-Control"] == "no-store"


def test_one_event_answers_with_its_own_code():
    g, _ = gateway()
    assert post(g, event(0), media="application/cloudevents+json").status == 202
    assert post(g, event(0, action="x"), media="application/cloudevents+json").status == 400


def test_unconfirmed_events_are_a_503_to_retry():
    g, _ = gateway(fail=True)
    reply = post(g, [event(0)])
    assert reply.status == 503 and reply.headers["Retry-After"] == "1"
    g.publish_many = None  # still connecting
    assert post(g, [event(0)]).status == 503


def test_the_key_rules():
    g, published = gateway()
    assert post(g, [event(0)], key=None).status == 401
    assert post(g, [event(0)], key="mqk_nope").status == 401
    assert post(g, [event(0)], key=None, query_key=KEY).status == 401  # not a beacon
    beacon = post(g, [event(0)], media="text/plain", key=None, query_key=KEY)
    assert beacon.status == 200 and published


def test_origins_limits_and_the_rate():
    g, _ = gateway(rate=1, burst=10)
    refused = post(g, [event(0)], origin="https://evil.example")
    assert refused.status == 403 and "Access-Control-Allow-Origin" not in refused.headers
    allowed = post(g, [event(0)], origin="https://news.example")
    assert allowed.headers["Access-Control-Allow-Origin"] == "https://news.example"
    assert post(g, b"[" + b" " * 10_001 + b"]").status == 413
    assert post(g, [event(n) for n in range(11)]).status == 413
    assert post(g, [event(n) for n in range(9)]).status == 200
    flooded = post(g, [event(n) for n in range(5)])
    assert flooded.status == 429 and int(flooded.headers["Retry-After"]) >= 4


def test_preflight():
    g, _ = gateway()
    ok = g.preflight("https://news.example")
    assert ok.status == 204 and "POST" in ok.headers["Access-Control-Allow-Methods"]
    assert g.preflight("https://evil.example").status == 403
    assert g.preflight(None).status == 403
