"""A digest's briefing, laid out as a newsletter lists its stories: an opening line, then
each item's title (written here, verbatim) over a short introduction the model writes
from that item's summary alone.

One generation per item, all of them rows of one engine batch: a 135M model asked to
write a whole briefing in one go forgets or paraphrases most titles, while one asked to
introduce a single item from its summary stays on it. So every item the recommender
picked is named, and the reply's ``item_ids`` are exactly the items introduced. The
opening is the template's ``opening``, written as it is: a model asked for a greeting
invents a publication. Pure logic: prompts come rendered, results come from the engine.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from .budget import fit, prompt_limit
from .engine.types import GenerationResult
from .errors import RequestError
from .sampling import SamplingParams

#: ``(template, focus, items)`` -> the prompt the model continues (``Engine.render``).
Render = Callable[[str, str, list[dict[str, str]] | None], str]
#: Tokens an item's introduction gets at least, however small the request's budget.
MIN_INTRO_TOKENS = 16
_SENTENCE_END = re.compile(r"[.!?](?=\s|$)")


@dataclass(frozen=True)
class Part:
    """One generation: its rendered prompt and sampling."""

    prompt: str
    params: SamplingParams


@dataclass(frozen=True)
class Briefing:
    """One digest: its ``opening`` line and one introduction per item, in the order of
    ``items`` (``item_id``, ``title``, ``summary`` each)."""

    opening: str
    parts: tuple[Part, ...]
    items: tuple[dict[str, str], ...]

    @property
    def item_ids(self) -> list[str]:
        return [item["item_id"] for item in self.items]

    def assemble(self, results: Sequence[GenerationResult]) -> GenerationResult:
        """The briefing's text from its introductions' ``results`` (in the order of
        ``items``), their token counts and timings added up as one generation's."""
        failed = next((r for r in results if not r.ok), None)
        lines = [self.opening] if self.opening else []
        for n, (item, result) in enumerate(zip(self.items, results, strict=True), start=1):
            lines.append(f"{n}. {item['title']}\n{introduction(result)}".rstrip())
        reasons = {r.finish_reason for r in results}
        finish = next((f for f in ("error", "deadline", "length") if f in reasons), "stop")
        firsts = [r.first_token_seconds for r in results if r.first_token_seconds is not None]
        return GenerationResult(
            request_id=results[0].request_id,
            text="\n\n".join(lines),
            token_ids=tuple(t for r in results for t in r.token_ids),
            prompt_tokens=sum(r.prompt_tokens for r in results),
            finish_reason=finish,
            first_token_seconds=min(firsts) if firsts else None,
            total_seconds=max(r.total_seconds for r in results),
            error=failed.error if failed else None,
        )


def plan(
    items: Sequence[dict[str, str]],
    focus: str,
    params: SamplingParams,
    *,
    opening: Callable[[list[dict[str, str]]], str],
    render: Render,
    count: Callable[[str], int],
    max_prompt_tokens: int,
    context_length: int,
) -> Briefing:
    """The briefing of ``items`` (best first): one introduction each, from the kind's
    template holding that one item, its summary cut to the prompt budget, each getting an
    equal share of ``params.max_new_tokens`` (at least ``MIN_INTRO_TOKENS``). An item
    whose prompt cannot fit is left out, so absent from ``item_ids``; a
    :class:`RequestError` when none fits."""
    tokens = intro_tokens(params.max_new_tokens, len(items))
    limit = prompt_limit(max_prompt_tokens, context_length, tokens)

    def intro(one: list[dict[str, str]]) -> str:
        return render("digest", focus, one)

    if count(intro([])) > limit:
        raise RequestError(f"the digest's prompt is over its budget of {limit} tokens")
    parts, kept = [], []
    for item in items:
        fitted = fit([item], intro, count, limit)  # [] when not even its title fits
        if fitted:
            kept.append(fitted[0])
            parts.append(Part(intro(fitted), replace(params, max_new_tokens=tokens)))
    if not kept:
        raise RequestError(f"no catalog item fits the prompt budget of {limit} tokens")
    return Briefing(opening(kept), tuple(parts), tuple(kept))


def intro_tokens(max_new_tokens: int, items: int) -> int:
    """Each introduction's share of the request's ``max_new_tokens``."""
    return max(MIN_INTRO_TOKENS, max_new_tokens // max(items, 1))


def introduction(result: GenerationResult) -> str:
    """An item's introduction as one paragraph; one cut by its token budget ends at its
    last complete sentence, when it has one (a reader gets no half sentence)."""
    text = " ".join(result.text.split())
    if result.finish_reason in ("length", "deadline"):
        ends = [m.end() for m in _SENTENCE_END.finditer(text)]
        if ends:
            text = text[: ends[-1]]
        elif text:
            text += "…"
    return text
