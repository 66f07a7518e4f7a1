"""The synthetic interaction stream: deterministic for a seed, shaped like a news site's
traffic, and every event valid by the contract."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from shared.data import synthetic
from shared.data.synthetic import InteractionStream, StreamSpec, encoded_chunks
from shared.events import EventCodec, InteractionEvent

SPEC = StreamSpec(users=20_000, items=5_000, events=300_000, seed=7)


def digest(spec: StreamSpec) -> str:
    h = hashlib.sha256()
    for keys, values in encoded_chunks(spec):
        for key, value in zip(keys, values, strict=True):
            h.update(key + b"\0" + value + b"\n")
    return h.hexdigest()


def columns(spec: StreamSpec) -> dict[str, np.ndarray]:
    chunks = list(InteractionStream(spec).chunks())
    return {
        name: np.concatenate([getattr(c, name) for c in chunks])
        for name in ("user", "item", "action", "time_ms", "dwell_ds")
    }


@pytest.fixture(scope="module")
def stream() -> dict[str, np.ndarray]:
    return columns(SPEC)


def zipf_slope(counts: np.ndarray, lo: int, hi: int) -> float:
    ranked = np.sort(counts)[::-1][lo - 1 : hi]
    ranks = np.arange(lo, lo + len(ranked))
    return float(np.polyfit(np.log(ranks), np.log(np.maximum(ranked, 1)), 1)[0])


# -- determinism -------------------------------------------------------------------------
def test_the_same_seed_gives_byte_identical_events_and_another_seed_others():
    small = StreamSpec(users=500, items=300, events=150_000, seed=1)  # three chunks
    assert digest(small) == digest(small)
    other = StreamSpec(users=500, items=300, events=150_000, seed=2)
    assert digest(other) != digest(small)
    ids = lambda spec: {v.split(b'"')[7] for _, vs in encoded_chunks(spec) for v in vs}  # noqa: E731
    # Different streams never share an id, so an idempotent ingest keeps both whole.
    assert not ids(small) & ids(other)


def test_a_chunk_is_the_same_whether_or_not_the_chunks_before_it_were_made():
    stream = InteractionStream(StreamSpec(users=500, items=300, events=150_000, seed=1))
    everything = list(stream.encoded_chunks())
    fresh = InteractionStream(StreamSpec(users=500, items=300, events=150_000, seed=1))
    assert fresh.encode(fresh.chunk(2)) == everything[2]
    assert [len(v) for _, v in everything] == [65_536, 65_536, 150_000 - 2 * 65_536]


def test_ids_are_distinct_and_events_in_time_order(stream):
    keys, values = zip(*encoded_chunks(SPEC), strict=True)
    values = [v for chunk in values for v in chunk]
    assert len(values) == SPEC.events
    assert len({v.split(b'"')[7] for v in values}) == SPEC.events
    assert np.all(np.diff(stream["time_ms"]) >= 0)


# -- shape -------------------------------------------------------------------------------
def test_item_popularity_is_zipf_with_the_stated_exponent():
    pure = columns(StreamSpec(users=20_000, items=5_000, events=300_000, seed=3, sections=1))
    counts = np.bincount(pure["item"], minlength=5_000)
    for lo, hi in ((1, 100), (10, 1_000)):
        assert zipf_slope(counts, lo, hi) == pytest.approx(-1.05, abs=0.07)


def test_sections_keep_the_zipf_slope_below_their_leading_stories(stream):
    # Each section's lead story shares the very top, so the fit starts after them.
    counts = np.bincount(stream["item"], minlength=SPEC.items)
    assert zipf_slope(counts, 2 * SPEC.sections, 1_000) == pytest.approx(-1.05, abs=0.1)
    # The most read items are spread over the ids, not items 0, 1, 2...
    assert sorted(np.argsort(counts)[::-1][:5]) != [0, 1, 2, 3, 4]


def test_readers_lean_to_their_section(stream):
    gen = InteractionStream(SPEC)
    rank_of_item = np.argsort(gen._item_of_rank)  # item number -> popularity rank
    same = (rank_of_item[stream["item"]] % SPEC.sections) == gen._user_section[stream["user"]]
    # Half the reads are in the reader's section, plus that section's share of the rest.
    assert same.mean() == pytest.approx(0.5 + 0.5 / SPEC.sections, abs=0.05)


def test_user_activity_is_heavy_tailed(stream):
    per_user = np.sort(np.bincount(stream["user"], minlength=SPEC.users))[::-1]
    top_tenth = per_user[: SPEC.users // 10].sum() / per_user.sum()
    assert top_tenth >= 0.4
    assert per_user[0] > 20 * np.median(per_user)


def test_traffic_has_a_daily_cycle_of_3_to_5_times(stream):
    hourly = np.bincount((stream["time_ms"] // 3_600_000) % 24, minlength=24)
    assert 3 <= hourly.max() / hourly.min() <= 5
    assert 2 <= hourly.argmin() <= 5  # the small hours
    assert hourly.argmax() in range(7, 22)
    days = np.bincount((stream["time_ms"] - stream["time_ms"][0]) // 86_400_000)
    assert len(days) == 30 and days.min() > 0.6 * days.max()  # weekends dip, never vanish


def test_timestamps_stay_within_the_span():
    start = datetime(2025, 3, 4, 5, 6, 7, tzinfo=UTC)
    spec = StreamSpec(users=100, items=100, events=50_000, days=2.5, start=start)
    times = columns(spec)["time_ms"]
    first, end = start.replace(second=0), start.replace(second=0) + timedelta(days=2.5)
    assert times.min() >= first.timestamp() * 1000
    assert times.max() < end.timestamp() * 1000
    assert times.max() - times.min() > 2.4 * 86_400_000


def test_the_action_mix_is_a_news_sites(stream):
    shares = np.bincount(stream["action"], minlength=5) / SPEC.events
    expected = [share for _, share in SPEC.action_mix]
    assert shares == pytest.approx(expected, abs=0.01)
    names = [name for name, _ in SPEC.action_mix]
    assert names[int(np.argmax(shares))] == "view"
    assert shares[names.index("share")] < shares[names.index("like")] < shares[names.index("click")]


# -- the contract ------------------------------------------------------------------------
def test_every_event_is_valid_and_says_what_the_columns_say():
    spec = StreamSpec(
        users=300, items=200, events=5_000, seed=11, start=datetime(2025, 6, 1, tzinfo=UTC)
    )
    gen = InteractionStream(spec)
    (chunk,) = gen.chunks()
    keys, values = gen.encode(chunk)
    codec = EventCodec()
    names = [name for name, _ in spec.action_mix]
    dwell_seconds = []
    for n, (key, value) in enumerate(zip(keys, values, strict=True)):
        event = codec.decode(value, topic="interactions")
        assert isinstance(event, InteractionEvent)
        assert event.source == synthetic.SOURCE and event.id == f"{spec.tag}-{n}"
        data = event.data
        assert key == data.user_id.encode() == f"u{chunk.user[n]}".encode()
        assert data.item_id == synthetic.item_id(int(chunk.item[n]))
        assert data.action == names[chunk.action[n]]
        assert event.time.timestamp() * 1000 == pytest.approx(chunk.time_ms[n], abs=0.5)
        assert data.rating is None
        if data.action == "dwell":
            dwell_seconds.append(data.dwell_seconds)
        else:
            assert data.dwell_seconds is None
    assert 1 <= min(dwell_seconds) and max(dwell_seconds) <= 3_600
    assert 30 <= float(np.median(dwell_seconds)) <= 60


@pytest.mark.parametrize(
    "bad",
    [
        {"users": 0},
        {"events": -1},
        {"days": 0},
        {"start": datetime(2025, 1, 1)},
        {"action_mix": (("read", 1.0),)},
        {"section_affinity": 1.5},
    ],
)
def test_a_bad_spec_is_refused(bad):
    with pytest.raises(ValueError):
        StreamSpec(**{"users": 10, "items": 10, "events": 10, **bad})


def test_no_events_is_an_empty_stream():
    assert list(encoded_chunks(StreamSpec(users=1, items=1, events=0))) == []


def test_a_specs_stream_does_not_change_unnoticed():
    """Benchmarks compare runs by seed: a change to these bytes bumps STREAM_VERSION."""
    spec = StreamSpec(users=1_000, items=100, events=3, seed=42)
    keys, values = next(encoded_chunks(spec))
    assert synthetic.STREAM_VERSION == 1
    assert keys[0] == b"u631"
    assert values[0] == (
        b'{"specversion":"1.0","id":"ld-926a788598-0","source":"urn:marquee:load",'
        b'"type":"marquee.interaction.v1","time":"2025-01-05T02:10:47.610Z",'
        b'"datacontenttype":"application/json",'
        b'"data":{"user_id":"u631","item_id":"i7","action":"view"}}'
    )


def test_one_stream_however_its_numbers_are_spelt():
    assert StreamSpec(users=1, items=1, events=1, days=2).tag == (
        StreamSpec(users=1, items=1, events=1, days=2.0).tag
    )
