"""Text around the model: stop sequences, streaming detokenization, prompt rendering."""

from __future__ import annotations

import pytest

from services.generator import prompts
from services.generator.errors import RequestError
from services.generator.stopping import StopText
from tests.services.generator.generator_helpers import CHATML


def feed(stopper: StopText, pieces: list[str]) -> str:
    return "".join(stopper.push(p) for p in pieces) + stopper.flush()


def test_stop_sequence_split_across_pieces_is_never_streamed():
    stopper = StopText(["\n\n", "END"])
    out = [stopper.push(p) for p in ["Hello", " wor", "ld\n", "\nmore"]]
    assert out == ["Hello", " wor", "ld", ""]
    assert stopper.stopped and stopper.text == "Hello world"
    assert stopper.push("ignored") == "" and stopper.flush() == ""


def test_held_back_prefix_is_released_when_it_turns_out_harmless():
    stopper = StopText(["STOP"])
    assert stopper.push("go ST") == "go "
    assert stopper.push("ART") == "START"
    assert feed(StopText(["STOP"]), ["a", "ST", "O"]) == "aSTO"  # ended without the P


def test_earliest_stop_wins_and_no_stops_stream_everything():
    assert feed(StopText(["b", "abc"]), ["xxab", "c"]) == "xxa"
    assert feed(StopText([]), ["a", "b"]) == "ab"


def test_text_stream_holds_back_partial_characters(tiny_engine):
    tok = tiny_engine.tokenizer
    ids = tok.encode("Zürich 🚋 the end")
    stream = tok.stream()
    pieces = [stream.push(i) for i in ids]
    assert "".join(pieces) == tok.decode(ids)
    assert all("\ufffd" not in p for p in pieces)
    assert "" in pieces  # the tram's four bytes arrive as four tokens
    assert stream.flush() == ""


def test_text_stream_flushes_a_character_cut_off_by_the_end(tiny_engine):
    tok = tiny_engine.tokenizer
    ids = tok.encode("tram 🚋")
    stream = tok.stream()
    cut = ids[:-1]  # generation ended inside the emoji's bytes
    text = "".join(stream.push(i) for i in cut) + stream.flush()
    assert text == tok.decode(cut) and text.endswith("\ufffd")


def test_kind_templates_render_through_the_chat_template():
    text = prompts.render("news", "The tram line was approved.", CHATML)
    assert text.startswith("<|im_start|>system\nYou are a newsroom writer.")
    assert "<|im_start|>user\nWrite a news article about the following. The tram line" in text
    assert text.endswith("<|im_start|>assistant\n")
    assistant = prompts.messages("assistant", "What is 2+2?")
    assert assistant == [{"role": "user", "content": "What is 2+2?"}]


def test_every_kind_renders_and_without_a_chat_template_too():
    assert set(prompts.KINDS) == {"news", "script", "lyrics", "assistant", "digest"}
    for kind in prompts.KINDS:
        plain = prompts.render(kind, "rain on the harbour", None)
        assert "rain on the harbour" in plain and plain.endswith("\n\n")


def test_prompt_text_is_data_not_template_code():
    text = prompts.render("assistant", "{{ 7 * 7 }} {% if true %}x{% endif %}", CHATML)
    assert "{{ 7 * 7 }} {% if true %}x{% endif %}" in text


def test_unknown_kind_and_empty_prompt_are_request_errors():
    with pytest.raises(RequestError, match="unknown kind 'poem'"):
        prompts.render("poem", "x", CHATML)
    with pytest.raises(RequestError, match="empty"):
        prompts.render("news", "   ", CHATML)
