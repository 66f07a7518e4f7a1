"""A complete generated piece as a catalog item: its title, summary and body, whatever
the model wrote; within the event size limit."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from services.generator.catalog import item_event, item_id_for, title_of
from shared.events import EventCodec
from shared.events.models import GeneratedContent

MADE_AT = datetime(2026, 12, 2, 9, tzinfo=UTC)


def reply(text: str, kind: str = "news", finish: str = "stop", **extra) -> GeneratedContent:
    fields = {
        "request_id": "r-1",
        "reply_id": "reply-1",
        "status": "ok",
        "kind": kind,
        "text": text,
        "model": "m",
        "finish_reason": finish,
        **extra,
    }
    return GeneratedContent(**fields)


def item(text: str, prompt: str = "the prompt", max_bytes: int = 1_000_000, **extra):
    return item_event(reply(text, **extra), MADE_AT, prompt, max_bytes)


def test_the_item_of_a_piece():
    text = "## Library opens downtown\n\nThe city opened a library. It has a roof garden."
    event = item(text)
    assert event.type == "marquee.item.v1" and event.time == MADE_AT
    assert event.model_dump() == item(text).model_dump()  # the same event every time
    data = event.data
    assert (data.item_id, data.kind, data.tags) == ("gen-r-1", "news", ["news"])
    assert data.title == "Library opens downtown"
    assert data.summary == (
        "## Library opens downtown The city opened a library. It has a roof garden."
    )
    assert data.body == text and data.published_at == MADE_AT


@pytest.mark.parametrize(
    ("text", "title"),
    [
        ("**The tram is coming.** Work starts in May.", "The tram is coming."),
        ("  \n\nFirst line\nsecond line", "First line"),
        ("word " * 60, ("word " * 23).strip() + "…"),
        ("x" * 300, "x" * 119 + "…"),
    ],
)
def test_the_title_is_the_first_sentence_within_120_characters(text, title):
    assert title_of(text) == title
    assert len(title_of(text)) <= 120


def test_a_piece_without_text_is_titled_by_its_prompt():
    assert item("  \n ", prompt="Turnout up 8%. More below").data.title == "Turnout up 8%."
    assert item("", prompt="\x01").data.title == "Untitled news"


def test_the_summary_is_the_first_300_characters_on_one_line():
    summary = item("word\n" * 200).data.summary
    assert len(summary) <= 300 and summary.endswith("…") and "\n" not in summary


def test_control_characters_a_model_may_emit_are_removed():
    data = item("Head\x07line\r\nbody\x1b[0m\tend").data
    assert data.title == "Headline" and data.body == "Headline\nbody[0m\tend"


def test_a_body_too_big_for_one_event_is_cut_to_fit():
    event = item("é" * 150_000, max_bytes=64 * 1024)
    assert 0 < len(event.data.body) < 150_000
    assert len(EventCodec(max_bytes=64 * 1024).encode(event)) <= 64 * 1024


@pytest.mark.parametrize(
    "extra",
    [{"kind": "assistant"}, {"finish": "deadline"}, {"finish": "error"}],
)
def test_only_complete_pieces_of_public_kinds_are_items(extra):
    assert item("Some text.", **extra) is None


def test_an_error_reply_is_no_item():
    error = GeneratedContent(
        request_id="r-1", reply_id="x", status="error", kind="news", error="boom", model="m"
    )
    assert item_event(error, MADE_AT, "p", 1_000_000) is None


def test_a_long_request_id_gets_a_bounded_item_id():
    assert item_id_for("r" * 120) == "gen-" + "r" * 120
    assert len(item_id_for("r" * 128)) == 44
