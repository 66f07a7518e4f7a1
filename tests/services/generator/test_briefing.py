"""A digest's briefing laid out from its parts: every item under its own title, each
introduction from that item alone, cut introductions ending at a full sentence."""

from __future__ import annotations

import pytest

from services.generator.briefing import MIN_INTRO_TOKENS, intro_tokens, introduction, plan
from services.generator.engine.types import GenerationResult
from services.generator.errors import RequestError
from services.generator.prompts import written
from services.generator.sampling import SamplingParams

ITEMS = [
    {"item_id": "heat", "title": "Heat (1995)", "summary": "A detective chases robbers. " * 20},
    {"item_id": "toys", "title": "Toy Story (1995)", "summary": "Toys come alive."},
]


def render(kind, prompt, items):
    return " ".join([kind, prompt] + [f"{i['title']}: {i['summary']}" for i in items or []])


def words(text: str) -> int:
    return len(text.split())


def result(text: str, finish: str = "stop", error: str | None = None) -> GenerationResult:
    ids = tuple(range(len(text.split())))
    return GenerationResult("r", text, ids, 3, finish, 0.1, 0.5, error)


def briefing(limit: int = 1000, items=ITEMS, max_new_tokens: int = 96):
    return plan(
        items,
        "",
        SamplingParams(max_new_tokens=max_new_tokens),
        opening=lambda kept: written("digest", "opening", "", kept),
        render=render,
        count=words,
        max_prompt_tokens=limit,
        context_length=4096,
    )


def test_each_item_gets_its_own_generation_and_a_share_of_the_tokens():
    b = briefing()
    assert b.item_ids == ["heat", "toys"]
    assert [p.prompt.count(":") for p in b.parts] == [1, 1]  # one item per prompt
    assert "Toy Story (1995): Toys come alive." in b.parts[1].prompt
    assert [p.params.max_new_tokens for p in b.parts] == [48, 48]
    assert intro_tokens(10, 5) == MIN_INTRO_TOKENS


def test_the_briefing_names_every_item_verbatim_whatever_the_model_wrote():
    b = briefing()
    out = b.assemble([result("A tense  chase\nin the city."), result("Toys live. They", "length")])
    assert out.text == (
        "Your personal briefing: 2 picks for you.\n\n"
        "1. Heat (1995)\nA tense chase in the city.\n\n"
        "2. Toy Story (1995)\nToys live."
    )
    assert out.finish_reason == "length" and out.completion_tokens == 6 + 3
    assert out.prompt_tokens == 6 and out.ok


def test_an_introduction_cut_without_a_full_sentence_is_marked_as_cut():
    assert introduction(result("An epic of", "length")) == "An epic of…"
    assert introduction(result("Done.", "stop")) == "Done."


def test_a_failed_part_fails_the_briefing():
    out = briefing().assemble([result("Fine."), result("", "error", "out of memory")])
    assert not out.ok and out.error == "out of memory" and out.finish_reason == "error"


def test_long_summaries_are_cut_to_the_budget_and_items_that_cannot_fit_are_left_out():
    b = briefing(limit=40)
    assert b.item_ids == ["heat", "toys"]
    assert all(words(p.prompt) <= 40 for p in b.parts)
    crowded = [{"item_id": "x", "title": "word " * 50, "summary": ""}] + ITEMS[1:]
    assert briefing(limit=40, items=crowded).item_ids == ["toys"]
    with pytest.raises(RequestError, match="no catalog item fits"):
        briefing(limit=40, items=crowded[:1])
