"""Replies the service builds: within the event size limit, whatever the model wrote."""

from __future__ import annotations

from services.generator.replies import SOURCE, fit_reply
from shared.events import EventCodec
from shared.events.models import GeneratedContent, GeneratedContentEvent


def reply(text: str, finish: str = "stop") -> GeneratedContent:
    return GeneratedContent(
        request_id="r-1",
        reply_id="reply-1",
        status="ok",
        kind="news",
        text=text,
        model="m",
        completion_tokens=4096,
        finish_reason=finish,
    )


def test_a_reply_over_the_event_limit_is_cut_to_fit():
    codec = EventCodec(max_bytes=4096)
    for text in ("word " * 5000, 'é"\\\n🚋' * 3000):  # escapes and multi-byte characters
        cut = fit_reply(reply(text), codec.max_bytes)
        assert text.startswith(cut.text) and len(cut.text) > 1000
        assert cut.finish_reason == "length"
        codec.encode(GeneratedContentEvent.create(cut, source=SOURCE))  # raises if too big


def test_a_reply_within_the_limit_is_untouched():
    short = reply("A short piece.")
    assert fit_reply(short, 64 * 1024) == short


def test_nul_characters_are_replaced_before_measuring_and_a_deadline_stays_the_reason():
    nul = fit_reply(reply("a\x00b" * 4000, finish="deadline"), 64 * 1024)
    assert nul.text == "a\ufffdb" * 4000 and nul.finish_reason == "deadline"  # fits whole
    cut = fit_reply(reply("\x00" * 30_000, finish="deadline"), 64 * 1024)
    assert 15_000 < len(cut.text) < 30_000 and set(cut.text) == {"\ufffd"}
    assert cut.finish_reason == "deadline"
