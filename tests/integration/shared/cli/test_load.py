"""`marquee load interactions` lands exactly the generator's events on the real broker."""

from __future__ import annotations

from datetime import UTC, datetime

from shared.data.synthetic import StreamSpec, encoded_chunks
from shared.events import EventCodec
from tests.integration.kafka_helpers import read_all, record_count
from tests.integration.stack_helpers import marquee


def test_load_publishes_exactly_the_events_asked_for_each_valid(topics):
    options = {"users": 300, "items": 80, "events": 3_000, "seed": 5, "days": 2}
    start = datetime(2025, 1, 1, tzinfo=UTC)
    args = [word for name, value in options.items() for word in (f"--{name}", str(value))]
    result = marquee(
        topics, "load", "interactions", *args, "--start", "2025-01-01T00:00Z", "--quiet"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("published 3,000 interactions (")
    assert "; 3,000 confirmed by the broker in " in result.stdout

    records = read_all(topics, "interactions", 3_000)
    assert len(records) == record_count(topics, "interactions") == 3_000
    codec = EventCodec()
    events = [codec.decode(r.value, topic="interactions") for r in records]
    assert len({e.id for e in events}) == 3_000
    assert all(r.key == e.data.user_id.encode() for r, e in zip(records, events, strict=True))
    assert all(dict(r.headers)["ce_type"] == b"marquee.interaction.v1" for r in records)
    # The very bytes the Python API makes for the same options (partitions reorder them).
    spec = StreamSpec(start=start, **options)
    assert sorted(r.value for r in records) == sorted(
        v for _, vs in encoded_chunks(spec) for v in vs
    )
