"""Catalog retrieval for grounded answers: BM25 over titles and summaries (bm25s) and the
catalog's content vectors, fused by reciprocal rank. Pure logic: the items and the
question's encoder come in; no Kafka, no database.

An item is relevant only when the question shares enough with it: BM25 counts it when it
holds at least half of the question's words (stop words aside), the content vectors when
its cosine similarity reaches ``MIN_SIMILARITY``. A question nothing is relevant to gets
no items, and the answer says so instead of inventing.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

#: Cosine similarity from which an item's content vector counts as about the question
#: (all-MiniLM-L6-v2: paraphrases score 0.5-0.9, unrelated texts below 0.2).
MIN_SIMILARITY = 0.35
#: The share of the question's words an item must hold for BM25 to count it.
MIN_WORD_SHARE = 0.5
#: Reciprocal rank fusion's constant (Cormack et al. 2009).
RRF_K = 60

Encode = Callable[[list[str]], np.ndarray]


@dataclass(frozen=True)
class CatalogEntry:
    item_id: str
    title: str
    summary: str = ""
    #: The item's content vector (unit length), when the recommender embedded it.
    content: np.ndarray | None = None

    @property
    def text(self) -> str:
        return f"{self.title}. {self.summary}".strip()

    def prompt_fields(self) -> dict[str, str]:
        return {"item_id": self.item_id, "title": self.title, "summary": self.summary}


def _words(texts: list[str]) -> list[list[str]]:
    import bm25s

    return bm25s.tokenize(texts, stopwords="en", return_ids=False, show_progress=False)


class Retriever:
    """An index over ``entries``; ``encode`` embeds a question as the catalog's content
    vectors were embedded (None: BM25 alone)."""

    def __init__(self, entries: Sequence[CatalogEntry], encode: Encode | None = None) -> None:
        import bm25s

        self.entries = list(entries)
        self.encode = encode
        self._words = [set(words) for words in _words([e.text for e in self.entries])]
        self._bm25 = bm25s.BM25()
        if self.entries:
            self._bm25.index(_words([e.text for e in self.entries]), show_progress=False)
        with_content = [i for i, e in enumerate(self.entries) if e.content is not None]
        self._content_rows = np.array(with_content, dtype=np.int64)
        self._content = (
            np.stack([self.entries[i].content for i in with_content]).astype(np.float32)
            if with_content and encode is not None
            else None
        )

    def by_words(self, question: str, k: int) -> list[int]:
        """Indices of the best BM25 matches holding enough of the question's words."""
        (words,) = _words([question])
        if not self.entries or not words:
            return []
        need = max(1, math.ceil(len(set(words)) * MIN_WORD_SHARE))
        scores = self._bm25.get_scores(words)
        ranked = np.argsort(-scores, kind="stable")
        hits = [
            int(i) for i in ranked if scores[i] > 0 and len(self._words[i] & set(words)) >= need
        ]
        return hits[:k]

    def by_content(self, question: str, k: int) -> list[int]:
        """Indices of the items whose content vector is nearest the question's."""
        if self._content is None or self.encode is None:
            return []
        query = np.asarray(self.encode([question]), dtype=np.float32)[0]
        similarity = self._content @ query
        ranked = np.argsort(-similarity, kind="stable")[:k]
        return [int(self._content_rows[i]) for i in ranked if similarity[i] >= MIN_SIMILARITY]

    def search(self, question: str, k: int = 5, mode: str = "hybrid") -> list[CatalogEntry]:
        """The ``k`` most relevant items, best first (none when nothing is relevant).
        ``mode``: ``hybrid`` (both, fused), ``bm25`` or ``content`` alone."""
        depth = max(k * 4, 20)
        lists = []
        if mode in ("hybrid", "bm25"):
            lists.append(self.by_words(question, depth))
        if mode in ("hybrid", "content"):
            lists.append(self.by_content(question, depth))
        fused: dict[int, float] = {}
        for ranking in lists:
            for rank, index in enumerate(ranking):
                fused[index] = fused.get(index, 0.0) + 1.0 / (RRF_K + rank + 1)
        best = sorted(fused, key=lambda i: (-fused[i], i))[:k]
        return [self.entries[i] for i in best]
