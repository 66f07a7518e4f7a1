"""The `marquee` CLI against the real broker: good input lands, bad input never does."""

from __future__ import annotations

import threading
import time

import pytest

from shared.events import EventCodec
from shared.events.models import GeneratedContentEvent
from shared.kafka.publisher import Publisher
from tests.integration.kafka_helpers import read_all, record_count
from tests.integration.stack_helpers import marquee


def test_publish_interaction_lands_on_the_topic(topics):
    result = marquee(
        topics, "publish", "interaction", "--user", "u7", "--item", "i3", "--type", "click"
    )
    assert result.returncode == 0, result.stderr
    assert f"to {topics.topic_prefix}interactions[" in result.stdout
    (record,) = read_all(topics, "interactions", expected=1)
    event = EventCodec().decode(record.value)
    assert (event.data.user_id, event.data.item_id, event.data.action) == ("u7", "i3", "click")


def test_publish_request_lands_on_the_topic(topics):
    result = marquee(
        topics,
        "publish",
        "request",
        "--kind",
        "news",
        "--prompt",
        "Elections",
        "--request-id",
        "req-1",
    )
    assert result.returncode == 0, result.stderr
    (record,) = read_all(topics, "content-requests", expected=1)
    assert record.key == b"req-1"


def test_publish_item_lands_on_the_catalog_keyed_by_its_id(topics, tmp_path):
    body = tmp_path / "body.txt"
    body.write_text("The harbour reopened on Monday.\nFerries run hourly.\n", encoding="utf-8")
    result = marquee(
        topics, "publish", "item", "--id", "article-9", "--kind", "article",
        "--title", "The harbour reopens", "--summary", "Ferries run again.",
        "--body-file", str(body), "--tag", "harbour", "--tag", "weather",
        "--published-at", "2026-11-30T08:00:00Z", "--url", "https://news.example/harbour",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("published marquee.item.v1 id=")
    assert f"to {topics.topic_prefix}catalog[" in result.stdout
    (record,) = read_all(topics, "catalog", expected=1)
    assert record.key == b"article-9"
    item = EventCodec().decode(record.value, topic="catalog").data
    assert (item.item_id, item.kind, item.title, item.tags) == (
        "article-9", "article", "The harbour reopens", ["harbour", "weather"],
    )  # fmt: skip
    assert item.body == "The harbour reopened on Monday.\nFerries run hourly.\n"
    assert item.published_at.isoformat() == "2026-11-30T08:00:00+00:00"
    assert item.url == "https://news.example/harbour" and not item.hidden


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["publish", "interaction", "--user", "u", "--item", "i", "--type", "stare"],
            "invalid choice: 'stare'",
        ),
        (["publish", "interaction", "--user", "u", "--type", "click"], "required: --item"),
        (
            ["publish", "interaction", "--user", "u", "--item", "i", "--type", "dwell"],
            "a dwell interaction needs dwell_seconds",
        ),
        (["publish", "interaction", "--user", "", "--item", "i", "--type", "view"], "data.user_id"),
        (
            [
                "publish",
                "interaction",
                "--user",
                "u",
                "--item",
                "i",
                "--type",
                "view",
                "--rating",
                "x",
            ],
            "invalid float value",
        ),
        (["publish", "request", "--kind", "poem", "--prompt", "p"], "invalid choice: 'poem'"),
        (["publish", "request", "--kind", "news", "--prompt", "x" * 9000], "data.prompt"),
        (
            ["publish", "request", "--kind", "news", "--prompt", "p", "--max-new-tokens", "0"],
            "data.max_new_tokens",
        ),
        (["publish", "item", "--id", "a", "--kind", "article"], "required: --title"),
        (
            [
                "publish",
                "item",
                "--id",
                "a",
                "--kind",
                "article",
                "--title",
                "T",
                "--published-at",
                "2025-01-01",
            ],
            "invalid ISO 8601 time with a timezone",
        ),  # fmt: skip
        (["replay", "movielens", "--limit", "-3"], "invalid positive integer value"),
        (["tail", "no-such-topic", "--max", "1"], "unknown topic 'no-such-topic'"),
    ],
)
def test_bad_input_is_one_line_exit_2_and_nothing_sent(topics, args, message):
    result = marquee(topics, *args)
    assert result.returncode == 2, result
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert record_count(topics, "interactions") == 0
    assert record_count(topics, "content-requests") == 0
    assert record_count(topics, "catalog") == 0


@pytest.mark.parametrize(
    "args",
    [
        ["topics", "ensure"],
        ["publish", "interaction", "--user", "u", "--item", "i", "--type", "view"],
        ["tail", "interactions", "--max", "1"],
        ["load", "interactions", "--users", "10", "--items", "10", "--events", "10"],
    ],
)
def test_unreachable_broker_is_one_clear_line_within_5_seconds(settings, args):
    started = time.monotonic()
    result = marquee(settings, *args, MARQUEE_KAFKA_BOOTSTRAP_SERVERS="127.0.0.1:1")
    took = time.monotonic() - started
    assert result.returncode == 1
    assert result.stderr.startswith("marquee: error: cannot reach Kafka at 127.0.0.1:1 within")
    assert "ECONNREFUSED" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr  # no client noise
    # A guard, not a benchmark: Python's start-up plus the CLI's 3 s wait, with room.
    assert took < 10, took


def test_tail_pretty_prints_events(topics):
    marquee(topics, "publish", "interaction", "--user", "u1", "--item", "i1", "--type", "like")
    result = marquee(
        topics, "tail", "interactions", "--from-beginning", "--max", "1", "--idle-timeout", "15"
    )
    assert result.returncode == 0, result.stderr
    assert "marquee.interaction.v1 key=u1" in result.stdout
    assert '"action": "like"' in result.stdout


def test_publish_request_wait_prints_even_a_reply_faster_than_the_cli(topics):
    """A reply sent the moment the request lands (before a `tail` could start) is printed."""

    def answer_first_request() -> None:
        (request,) = read_all(topics, "content-requests", expected=1, timeout_s=60)
        reply = GeneratedContentEvent.create(
            {
                "request_id": request.key.decode(),
                "reply_id": "p-1",
                "status": "ok",
                "kind": "news",
                "text": "Turnout rose by eight points.",
                "model": "test",
                "completion_tokens": 6,
                "finish_reason": "stop",
            }
        )
        with Publisher(topics) as publisher:
            publisher.publish_sync(reply)

    responder = threading.Thread(target=answer_first_request, daemon=True)
    responder.start()
    result = marquee(
        topics, "publish", "request", "--kind", "news", "--prompt", "Turnout", "--wait"
    )
    responder.join(timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == "Turnout rose by eight points."
    assert "finish: stop" in result.stderr


def test_publish_request_wait_without_a_generator_says_so(topics):
    result = marquee(
        topics, "publish", "request", "--kind", "news", "--prompt", "x", "--wait",
        "--wait-seconds", "2",
    )  # fmt: skip
    assert result.returncode == 1
    assert "no reply to request" in result.stderr and "marquee serve generator" in result.stderr
