"""Bodies by the CloudEvents HTTP binding: one event, a batch, or a beacon's text/plain."""

from __future__ import annotations

import json

import pytest

from services.collector.body import BATCH, BEACON, STRUCTURED, media_type, parse
from services.collector.errors import RequestRefused


def test_media_types_take_parameters_and_refuse_the_rest():
    assert media_type("text/plain;charset=UTF-8") == BEACON
    assert media_type("Application/CloudEvents+JSON; charset=utf-8") == STRUCTURED
    for other in (None, "application/json", "multipart/form-data"):
        with pytest.raises(RequestRefused) as refused:
            media_type(other)
        assert refused.value.status == 415 and BATCH in refused.value.reason


def test_one_event_and_a_batch():
    single = parse(b'{"id": "a", "type": "t", "source": "s"}', STRUCTURED, max_events=5)
    assert not single.batched and single.events[0].id == "a"
    batch = parse(json.dumps([{"id": "a"}, 7, {"id": "b"}]).encode(), BATCH, max_events=5)
    assert batch.batched and [e.id for e in batch.events] == ["a", None, "b"]
    assert batch.events[1].raw is None and "not a JSON event object" in batch.events[1].problem
    assert json.loads(batch.events[2].raw) == {"id": "b"}


def test_a_beacon_is_either_form():
    assert not parse(b'{"id": "a"}', BEACON, max_events=5).batched
    assert parse(b'[{"id": "a"}]', BEACON, max_events=5).batched


@pytest.mark.parametrize(
    ("body", "media", "status", "words"),
    [
        (b"", STRUCTURED, 400, "empty body"),
        (b"{nope", STRUCTURED, 400, "not JSON"),
        (b"[]", BATCH, 400, "empty batch"),
        (b'{"id": "a"}', BATCH, 400, "JSON array"),
        (b"[1]", STRUCTURED, 400, "JSON object"),
        (json.dumps([{}] * 6).encode(), BATCH, 413, "limit is 5"),
        (b"[" * 100_000, BATCH, 400, "not JSON"),
    ],
)
def test_bad_bodies_are_refused_whole(body, media, status, words):
    with pytest.raises(RequestRefused) as refused:
        parse(body, media, max_events=5)
    assert refused.value.status == status and words in refused.value.reason
