"""Content-based factors: what an item is about, mapped into the ALS factor space.

An item nobody has read has no ALS factors, so ``u · v`` cannot score it. Its text can:
each catalog item's title, tags and summary are embedded (:mod:`.embedding`), and a ridge
regression learned on the items that have both an embedding and factors maps the
embedding to factors (refitted whenever a version loads). A new article is then
recommendable from its first minute, to the users whose factors point its way; once
readers interact, fold-in replaces the mapped factors with ones learned from them.
Pure logic: no Kafka, no database.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import numpy as np

#: Ridge penalty on the mapping (the embeddings are unit vectors; chosen on MovieLens-100k's
#: item_cold_start protocol, docs/benchmarks.md).
RIDGE = 1.0
#: Fewer items with both than this and the mapping would be a guess: no mapping.
MIN_ITEMS = 20


@dataclass(frozen=True, slots=True)
class ItemInfo:
    """What serving needs of a catalog item: a name, and until when it may be shown."""

    title: str | None
    kind: str
    tags: tuple[str, ...] = ()
    published_at: datetime | None = None
    expires_at: datetime | None = None
    hidden: bool = False

    def until(self, max_age_seconds: dict[str, float]) -> float:
        """The epoch second from which the item is never shown (``-inf``: never again,
        ``inf``: no end)."""
        if self.hidden:
            return -np.inf
        end = self.expires_at.timestamp() if self.expires_at else np.inf
        age = max_age_seconds.get(self.kind)
        if age is not None and self.published_at is not None:
            end = min(end, self.published_at.timestamp() + age)
        return end


def content_text(title: str, tags: list[str] | tuple[str, ...], summary: str) -> str:
    """The text an item is embedded from: its title, its tags, its summary (the body is
    left out: the encoder reads 128 tokens, and the summary says what the body is about)."""
    parts = [title.strip()]
    if tags:
        parts.append(", ".join(tags))
    if summary.strip():
        parts.append(summary.strip())
    return ". ".join(parts)


@dataclass(frozen=True)
class ContentMap:
    """``factors ≈ mean_factors + scale * (embedding - mean_embedding) @ weights``.

    Ridge shrinks its predictions toward the mean item (on MovieLens-100k with the default
    ridge a mapped item's spread around it is about two thirds of a trained one's, less
    with a stronger ridge), so a mapped item would rank below most trained ones; ``scale``
    restores the trained items' median spread, so new items compete on equal terms in a
    mixed list. It changes no ranking among mapped items.
    """

    mean_embedding: np.ndarray
    mean_factors: np.ndarray
    weights: np.ndarray
    scale: float = 1.0

    @classmethod
    def fit(
        cls, embeddings: np.ndarray, factors: np.ndarray, ridge: float = RIDGE
    ) -> ContentMap | None:
        """Learn the map on items that have both (rows aligned); ``None`` with too few."""
        if len(embeddings) < MIN_ITEMS:
            return None
        x = np.asarray(embeddings, dtype=np.float64)
        y = np.asarray(factors, dtype=np.float64)
        mean_x, mean_y = x.mean(axis=0), y.mean(axis=0)
        xc, yc = x - mean_x, y - mean_y
        gram = xc.T @ xc + ridge * np.eye(x.shape[1])
        weights = np.linalg.solve(gram, xc.T @ yc)
        spread = np.median(np.linalg.norm(xc @ weights, axis=1))
        scale = float(np.median(np.linalg.norm(yc, axis=1)) / spread) if spread > 0 else 1.0
        return cls(mean_x, mean_y, weights, scale)

    def factors(self, embeddings: np.ndarray) -> np.ndarray:
        """Mapped factors of each row of ``embeddings`` (float32, like the model's)."""
        x = np.atleast_2d(np.asarray(embeddings, dtype=np.float64))
        offset = (x - self.mean_embedding) @ self.weights
        return (self.mean_factors + self.scale * offset).astype(np.float32)
