"""Catalog retrieval: BM25 and content vectors, fused; nothing when nothing is relevant."""

from __future__ import annotations

import numpy as np

from services.generator.retrieval import CatalogEntry, Retriever

TEXTS = {
    "heat": ("Heat", "A detective chases a crew of bank robbers through Los Angeles."),
    "toys": ("Toy Story", "Toys come alive whenever their owner leaves the room."),
    "apollo": ("Apollo 13", "Astronauts survive an explosion on their way to the moon."),
}
#: A toy content space: one axis per topic (crime, childhood, space, anything else).
AXES = {"heat": 0, "toys": 1, "apollo": 2}
TOPICS = {"robbery": 0, "heist": 0, "playthings": 1, "rocket": 2}
ELSEWHERE = 3


def unit(axis: int) -> np.ndarray:
    v = np.full(4, 0.05, dtype=np.float32)
    v[axis] = 1.0
    return v / np.linalg.norm(v)


def encode(texts: list[str]) -> np.ndarray:
    """Questions land on the axis of the topic word they hold."""
    out = []
    for text in texts:
        axis = next((a for word, a in TOPICS.items() if word in text.lower()), ELSEWHERE)
        out.append(unit(axis))
    return np.stack(out)


def catalog(with_content: bool = True) -> list[CatalogEntry]:
    return [
        CatalogEntry(i, title, summary, unit(AXES[i]) if with_content else None)
        for i, (title, summary) in TEXTS.items()
    ]


def ids(entries) -> list[str]:
    return [e.item_id for e in entries]


def test_bm25_finds_the_item_a_question_shares_words_with():
    r = Retriever(catalog(with_content=False))
    assert ids(r.search("Who robbed the bank in Los Angeles?", k=2)) == ["heat"]
    assert ids(r.search("astronauts on the moon", k=2)) == ["apollo"]


def test_content_finds_what_shares_no_word_and_hybrid_keeps_both():
    r = Retriever(catalog(), encode)
    question = "a film about a heist"
    assert ids(r.search(question, mode="bm25")) == []
    assert ids(r.search(question, mode="content")) == ["heat"]
    assert ids(r.search(question)) == ["heat"]


def test_nothing_relevant_gives_no_items():
    r = Retriever(catalog(), encode)
    assert r.search("What should I be cooking tonight?") == []
    assert Retriever([], encode).search("anything at all") == []


def test_without_an_encoder_content_vectors_are_ignored():
    r = Retriever(catalog(), None)
    assert r.search("a heist", mode="content") == []
