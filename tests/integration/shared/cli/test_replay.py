"""`marquee replay movielens` lands exactly what it says on the real broker: the whole
catalog first, then the ratings."""

from __future__ import annotations

from shared.data import movielens
from shared.events import EventCodec
from tests.integration.kafka_helpers import read_all, record_count
from tests.integration.stack_helpers import marquee


def test_replaying_10000_ratings_lands_exactly_10000_records(topics):
    result = marquee(topics, "replay", "movielens", "--limit", "10000", "--quiet")
    assert result.returncode == 0, result.stderr
    assert "replayed 10000 MovieLens-100k ratings; 10000 confirmed by the broker" in result.stdout
    assert record_count(topics, "interactions") == 10_000


def test_a_limited_replay_publishes_the_whole_catalog_first(topics):
    result = marquee(topics, "replay", "movielens", "--limit", "50", "--quiet")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith(
        "published MovieLens-100k's catalog: 1682 films; 1682 confirmed by the broker"
    )
    assert lines[1].startswith("replayed 50 MovieLens-100k ratings; 50 confirmed")
    codec = EventCodec(max_clock_skew_seconds=0)
    catalog = read_all(topics, "catalog", 1682)
    items = {r.key.decode(): codec.decode(r.value, topic="catalog") for r in catalog}
    assert len(catalog) == len(items) == 1682
    assert set(items) == {str(n) for n in range(1, 1683)}
    star_wars = items["50"].data
    assert (star_wars.kind, star_wars.title) == ("film", "Star Wars (1977)")
    assert star_wars.tags == ["Action", "Adventure", "Romance", "Sci-Fi", "War"]
    # Every film was confirmed before the first rating was sent.
    last_film = max(r.timestamp for r in catalog)
    ratings = read_all(topics, "interactions", 50)
    assert len(ratings) == 50 and min(r.timestamp for r in ratings) >= last_film
    assert {codec.decode(r.value).data.item_id for r in ratings} <= set(items)


def test_replay_is_in_timestamp_order_per_user(topics):
    from shared.cli.replay import replay

    sent, confirmed = replay(topics, limit=500, progress=False)
    assert sent == confirmed == 500
    events = [
        EventCodec(max_clock_skew_seconds=0).decode(r.value)
        for r in read_all(topics, "interactions", 500)
    ]
    by_user: dict[str, list] = {}
    for e in events:
        by_user.setdefault(e.data.user_id, []).append(e.time)
    assert all(times == sorted(times) for times in by_user.values())
    first = movielens.load_ratings()[:500]
    assert {e.id for e in events} == {
        f"ml100k-{r.user_id}-{r.item_id}-{r.timestamp}" for r in first
    }
