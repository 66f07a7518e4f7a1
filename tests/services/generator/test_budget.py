"""The prompt budget: retrieved text is cut, then items dropped, until the prompt fits."""

from __future__ import annotations

import pytest

from services.generator.budget import MIN_SUMMARY_CHARS, fit, prompt_limit
from services.generator.errors import RequestError


def render(items):
    return "Intro. " + " ".join(f"[{i['item_id']}] {i['title']}: {i['summary']}" for i in items)


def words(text: str) -> int:
    return len(text.split())


def item(n: int, summary_words: int = 100) -> dict[str, str]:
    return {
        "item_id": f"i{n}",
        "title": f"Title {n}",
        "summary": " ".join(["word"] * summary_words),
    }


def test_items_that_fit_are_left_whole():
    items = [item(1, 5), item(2, 5)]
    assert fit(items, render, words, 100) == items


def test_summaries_are_cut_before_any_item_is_dropped():
    items = [item(n) for n in range(3)]
    assert words(render(items)) > 200
    kept = fit(items, render, words, 200)
    assert [i["item_id"] for i in kept] == ["i0", "i1", "i2"]
    assert words(render(kept)) <= 200
    assert all(i["summary"].endswith("…") for i in kept)


def test_the_last_items_are_dropped_once_summaries_are_short():
    items = [item(n) for n in range(10)]
    kept = fit(items, render, words, 40)
    assert 0 < len(kept) < 10
    assert [i["item_id"] for i in kept] == [f"i{n}" for n in range(len(kept))]  # best first
    assert all(len(i["summary"]) <= MIN_SUMMARY_CHARS for i in kept)
    assert words(render(kept)) <= 40


def test_a_prompt_over_budget_without_items_is_a_request_error():
    with pytest.raises(RequestError, match="budget of 0 tokens"):
        fit([item(1)], render, words, 0)


def test_the_limit_leaves_room_for_the_answer():
    assert prompt_limit(8191, 8192, 256) == 8192 - 256
    assert prompt_limit(1000, 8192, 256) == 1000  # the operator's budget wins
    assert prompt_limit(8191, 8192, 8000) == 2048  # never under a quarter of the context
