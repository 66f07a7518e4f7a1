"""``embed_catalog``: the catalog's content vectors before a retrain, on an in-memory
catalog with a fake encoder."""

from __future__ import annotations

import numpy as np

from services.recommender.training import embed_catalog
from tests.services.recommender.fakes import Clock, MemoryCatalog, item_row

KEPT = np.array([1.0, 0.0, 0.0], dtype=np.float32)


class Encoder:
    """Every text to the same unit vector; remembers what it was asked."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    def __call__(self, texts: list[str]) -> np.ndarray:
        self.calls.append(list(texts))
        return np.full((len(texts), 3), 3**-0.5, dtype=np.float32)


def test_items_without_the_current_encoders_content_are_embedded_in_batches():
    catalog = MemoryCatalog(Clock())
    catalog.write(
        [item_row(f"new{n}", f"New {n}") for n in range(4)]
        + [item_row("older", "Older", KEPT, model="older-encoder")]
        + [item_row("current", "Current", KEPT, model="encoder")]
    )
    encode, progress = Encoder(), []
    stored = embed_catalog(
        catalog, encode, "encoder", batch_size=2, progress=lambda *p: progress.append(p)
    )
    assert stored == 5 and progress == [(2, 5), (4, 5), (5, 5)]
    assert [len(call) for call in encode.calls] == [2, 2, 1]
    assert not any("Current" in text for call in encode.calls for text in call)
    rows = {item: row for item, (row, _) in catalog.rows.items()}
    assert all(row.content_model == "encoder" for row in rows.values())
    assert np.array_equal(rows["current"].content, KEPT)  # not embedded again
    assert not np.array_equal(rows["older"].content, KEPT)  # another encoder's: replaced

    # Everything current: nothing to encode.
    assert embed_catalog(catalog, encode, "encoder") == 0 and len(encode.calls) == 3


def test_an_item_changed_while_its_batch_was_encoded_keeps_the_change():
    catalog = MemoryCatalog(Clock())
    catalog.write([item_row("a", "A"), item_row("b", "B")])

    def encode(texts: list[str]) -> np.ndarray:
        # Meanwhile a worker stores a new version of "a", with its own vector.
        catalog.write([item_row("a", "A, corrected", KEPT, model="encoder")])
        return np.full((len(texts), 3), 3**-0.5, dtype=np.float32)

    assert embed_catalog(catalog, encode, "encoder") == 1
    row, _ = catalog.rows["a"]
    assert row.title == "A, corrected" and np.array_equal(row.content, KEPT)
    assert catalog.rows["b"][0].content is not None
