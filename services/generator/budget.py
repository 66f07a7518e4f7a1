"""The prompt budget: retrieved catalog text cut to fit the model's context, with room
left for the answer. Pure logic: the prompt's renderer and token counter come in."""

from __future__ import annotations

from collections.abc import Callable

from .catalog import shorten
from .errors import RequestError

#: A summary is never cut below this many characters: past that, an item is dropped whole.
MIN_SUMMARY_CHARS = 60

Items = list[dict[str, str]]


def prompt_limit(max_prompt_tokens: int, context_length: int, max_new_tokens: int) -> int:
    """The most prompt tokens that leave ``max_new_tokens`` of the context for the answer;
    a request asking for most of the context still gets a quarter of it for its prompt
    (its answer then ends at the context's end, as any other would)."""
    room = max(context_length - max_new_tokens, context_length // 4)
    return min(max_prompt_tokens, room)


def fit(
    items: Items, render: Callable[[Items], str], count: Callable[[str], int], limit: int
) -> Items:
    """``items`` (best first) such that ``count(render(items)) <= limit``: the summaries
    are halved, all alike, until they reach ``MIN_SUMMARY_CHARS``; then the last items
    are dropped. A :class:`RequestError` when even no item leaves the prompt in budget."""
    items = [dict(item) for item in items]
    while count(render(items)) > limit:
        longest = max((len(item.get("summary", "")) for item in items), default=0)
        if longest > MIN_SUMMARY_CHARS:
            cap = max(MIN_SUMMARY_CHARS, longest // 2)
            for item in items:
                item["summary"] = shorten(item.get("summary", ""), cap)
        elif items:
            items.pop()
        else:
            raise RequestError(
                f"the prompt is over its budget of {limit} tokens without any catalog item; "
                "ask for fewer new tokens or a shorter prompt"
            )
    return items
