"""The event codec: every type round-trips, every class of bad input is a precise InvalidEvent."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from shared.errors import InvalidEvent, is_retriable
from shared.events import (
    EVENT_TYPES,
    EventCodec,
    GeneratedContentEvent,
    InteractionEvent,
    RecommendationsEvent,
)

CODEC = EventCodec()


def now_iso(**delta) -> str:
    return (datetime.now(UTC) + timedelta(**delta)).isoformat()


def interaction(**overrides) -> dict:
    """A valid structured-mode interaction document; ``data`` overrides merge."""
    doc = {
        "specversion": "1.0",
        "id": "e-1",
        "source": "urn:app",
        "type": "marquee.interaction.v1",
        "time": now_iso(),
        "data": {"user_id": "u-1", "item_id": "i-1", "action": "view"},
    }
    data = overrides.pop("data", {})
    doc.update(overrides)
    doc["data"] = {**doc["data"], **data}
    return doc


def without(doc: dict, key: str) -> dict:
    return {k: v for k, v in doc.items() if k != key}


def decode_error(raw, codec: EventCodec = CODEC) -> str:
    with pytest.raises(InvalidEvent) as info:
        codec.decode(raw)
    assert not is_retriable(info.value)  # poison: goes to the DLQ, never retried
    return str(info.value)


# --- round trips ----------------------------------------------------------------------------
@pytest.mark.parametrize("event_type", sorted(EVENT_TYPES))
def test_every_event_type_round_trips(sample_event, event_type):
    event = sample_event(event_type, subject="s-1")
    raw = CODEC.encode(event)
    decoded = CODEC.decode(raw)
    assert type(decoded) is EVENT_TYPES[event_type]
    assert decoded == event
    assert decoded.type == event_type
    assert CODEC.encode(decoded) == raw  # stable bytes: re-publishing changes nothing


@pytest.mark.parametrize(
    "wrap", [bytes, bytearray, lambda b: b.decode()], ids=["bytes", "bytearray", "str"]
)
def test_decode_accepts_every_buffer_type(sample_event, wrap):
    event = sample_event("marquee.interaction.v1")
    assert CODEC.decode(wrap(CODEC.encode(event))) == event


def test_decode_accepts_memoryview(sample_event):
    # decode() declares memoryview; a valid event must not be dead-lettered for its buffer type.
    event = sample_event("marquee.interaction.v1")
    assert CODEC.decode(memoryview(CODEC.encode(event))) == event


def test_encode_leaves_out_unset_optionals(sample_event):
    doc = json.loads(CODEC.encode(sample_event("marquee.interaction.v1")))
    assert "subject" not in doc and "dataschema" not in doc
    assert doc["specversion"] == "1.0" and doc["datacontenttype"] == "application/json"


def test_extension_attributes_are_kept_as_they_came():
    doc = interaction(traceparent="00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
    doc.update(partitionkey="u-1", retries=2, replay=True)
    event = CODEC.decode(json.dumps(doc))
    assert event.model_extra == {
        "traceparent": doc["traceparent"],
        "partitionkey": "u-1",
        "retries": 2,
        "replay": True,
    }
    assert json.loads(CODEC.encode(event))["traceparent"] == doc["traceparent"]


def test_rfc3339_times_in_every_allowed_shape_are_accepted():
    for text in (
        "2025-01-02T03:04:05Z",
        "2025-01-02t03:04:05.123456+02:00",
        "2025-01-02T03:04:05z",
    ):
        assert CODEC.decode(json.dumps(interaction(time=text))).time.tzinfo is not None


def test_idempotency_key_is_source_slash_id():
    event = InteractionEvent.create(
        {"user_id": "u", "item_id": "i", "action": "like"}, source="urn:app:web", id="e-42"
    )
    assert event.idempotency_key == "urn:app:web/e-42"
    assert CODEC.decode(CODEC.encode(event)).idempotency_key == "urn:app:web/e-42"


def test_create_assigns_fresh_ids_and_current_time():
    data = {"user_id": "u", "item_id": "i", "action": "view"}
    a, b = InteractionEvent.create(data), InteractionEvent.create(data)
    assert a.id != b.id
    assert abs((a.time - datetime.now(UTC)).total_seconds()) < 5


# --- bad input ------------------------------------------------------------------------------
KNOWN = sorted(EVENT_TYPES)

BAD_INPUT = [
    # (id, raw, substrings the message must contain)
    ("none", None, ["empty message"]),
    ("empty", b"", ["not a JSON event object"]),
    ("malformed-json", b'{"id": "e-1",', ["not a JSON event object"]),
    ("not-json", b"{not json}", ["not a JSON event object"]),
    ("json-array", b"[1, 2]", ["object"]),
    ("json-string", b'"marquee"', ["object"]),
    ("json-number", b"42", ["object"]),
    ("json-null", b"null", ["object"]),
    ("missing-type", without(interaction(), "type"), ["missing field 'type'"]),
    (
        "unknown-type",
        interaction(type="marquee.nope.v1"),
        ["unknown event type 'marquee.nope.v1'", "known types:", *KNOWN],
    ),
    ("wrong-type-data-field", interaction(data={"user_id": 5}), ["data.user_id:", "string"]),
    ("coerced-number", interaction(data={"rating": "5"}), ["data.rating:", "number"]),
    ("bool-as-number", interaction(data={"rating": True}), ["data.rating:"]),
    ("wrong-type-envelope-field", interaction(source=5), ["source:"]),
    ("bad-enum", interaction(data={"action": "poke"}), ["data.action:"]),
    ("data-not-object", {**interaction(), "data": [1]}, ["data:", "object"]),
    ("unknown-data-field", interaction(data={"colour": "red"}), ["data.colour: unknown field"]),
    (
        "unknown-envelope-field",
        interaction(Colour="red"),
        ["Colour: unknown field", "extension attribute names are lower-case"],
    ),
    ("extension-of-another-shape", interaction(seq=[1]), ["seq"]),
    ("missing-specversion", without(interaction(), "specversion"), ["specversion: field required"]),
    ("wrong-specversion", interaction(specversion="0.3"), ["specversion:"]),
    ("epoch-time-in-a-string", interaction(time="1735689600"), ["time: must be an RFC 3339"]),
    ("epoch-time-number", interaction(time=1735689600), ["time:"]),
    ("date-without-time", interaction(time="2025-01-01"), ["time: must be an RFC 3339"]),
    ("nul-in-source", interaction(source="urn:app\x00"), ["source:", "pattern"]),
    ("nul-in-subject", interaction(subject="s\x00"), ["subject:", "pattern"]),
    (
        "unpaired-surrogate",
        b'{"specversion": "1.0", "id": "e-1", "source": "urn:app", '
        b'"type": "marquee.content_request.v1", "time": "2025-01-01T00:00:00Z", "data": '
        b'{"request_id": "r", "kind": "news", "prompt": "a\\ud800b"}}',
        ["not a JSON event object"],  # JSON's lone \ud800 is no text: poison, never stored
    ),
    ("missing-id", without(interaction(), "id"), ["id: field required"]),
    (
        "missing-data-field",
        {**interaction(), "data": {"user_id": "u", "action": "view"}},
        ["data.item_id: field required"],
    ),
    ("empty-id", interaction(id=""), ["id:"]),
    ("newline-in-id", interaction(id="e\n1"), ["id:", "pattern"]),
    ("nul-in-id", interaction(id="e\x001"), ["id:", "pattern"]),
    ("space-in-id", interaction(id="e 1"), ["id:", "pattern"]),
    ("naive-time", interaction(time="2025-01-01T00:00:00"), ["time:", "timezone"]),
    (
        "future-time",
        interaction(time=now_iso(hours=1)),
        ["in the future", "allowed clock skew: 300 s"],
    ),
    ("dwell-without-seconds", interaction(data={"action": "dwell"}), ["data:", "dwell_seconds"]),
    (
        "negative-dwell",
        interaction(data={"action": "dwell", "dwell_seconds": -1}),
        ["data.dwell_seconds:"],
    ),
]


@pytest.mark.parametrize("raw, expected", [b[1:] for b in BAD_INPUT], ids=[b[0] for b in BAD_INPUT])
def test_decode_rejects_bad_input_precisely(raw, expected):
    if isinstance(raw, dict):
        raw = json.dumps(raw).encode()
    message = decode_error(raw)
    for part in expected:
        assert part in message, f"{part!r} not in {message!r}"


@pytest.mark.parametrize(
    "bad_id",
    ["a\x00b", "a\x1fb", "a\nb", "a\tb", "a\x7fb", "a\x85b"],
    ids=["nul", "unit-sep", "newline", "tab", "del", "c1-nel"],
)
@pytest.mark.parametrize("field", ["user_id", "item_id"])
def test_decode_rejects_control_characters_in_data_ids(field, bad_id):
    # The Id type promises "no control characters": DEL and the C1 range are control characters too.
    message = decode_error(json.dumps(interaction(data={field: bad_id})))
    assert message.startswith(f"data.{field}:")


def test_nested_paths_name_the_list_index(sample_event):
    doc = json.loads(CODEC.encode(sample_event("marquee.recommendations.v1")))
    doc["data"]["items"][1]["score"] = "high"
    assert decode_error(json.dumps(doc)).startswith("data.items.1.score:")


@pytest.mark.parametrize("score", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_scores_are_rejected(sample_event, score):
    doc = json.loads(CODEC.encode(sample_event("marquee.recommendations.v1")))
    doc["data"]["items"][0]["score"] = score  # json.dumps writes NaN / Infinity
    assert "data.items.0.score:" in decode_error(json.dumps(doc))


@pytest.mark.parametrize(
    "data, reason",
    [
        ({"status": "ok"}, "an ok reply needs text"),
        ({"status": "error", "text": "partial"}, "an error reply needs error"),
        ({"status": "error", "error": ""}, "an error reply needs error"),
    ],
    ids=["ok-without-text", "error-without-error", "error-with-empty-error"],
)
def test_generated_content_status_must_match_body(data, reason):
    body = {"request_id": "r", "reply_id": "p", "kind": "news", "model": "m", **data}
    doc = {**interaction(type="marquee.generated_content.v1"), "data": body}
    message = decode_error(json.dumps(doc))
    assert message.startswith("data:") and reason in message
    with pytest.raises(InvalidEvent, match=reason):
        GeneratedContentEvent.create(body)


def test_error_reply_without_text_is_valid():
    event = GeneratedContentEvent.create(
        {
            "request_id": "r",
            "reply_id": "p",
            "status": "error",
            "kind": "news",
            "model": "m",
            "error": "deadline exceeded",
            "finish_reason": "deadline",
        }
    )
    assert CODEC.decode(CODEC.encode(event)).data.text is None


# --- configurable limits --------------------------------------------------------------------
def test_clock_skew_is_configurable():
    an_hour_ahead = json.dumps(interaction(time=now_iso(hours=1)))
    assert CODEC.decode(json.dumps(interaction(time=now_iso(seconds=60)))).id == "e-1"
    assert EventCodec(max_clock_skew_seconds=7200).decode(an_hour_ahead).id == "e-1"
    message = decode_error(
        json.dumps(interaction(time=now_iso(seconds=60))), EventCodec(max_clock_skew_seconds=10)
    )
    assert "allowed clock skew: 10 s" in message
    # The past is fine: replays carry old timestamps.
    assert CODEC.decode(json.dumps(interaction(time="2001-01-01T00:00:00Z"))).id == "e-1"


def test_oversized_payload_is_rejected_with_the_limit():
    raw = json.dumps(interaction()).encode()
    assert EventCodec(max_bytes=len(raw)).decode(raw).id == "e-1"  # the limit itself is allowed
    message = decode_error(raw, EventCodec(max_bytes=len(raw) - 1))
    assert f"event is {len(raw)} bytes; the limit is {len(raw) - 1}" in message
    assert "MARQUEE_MAX_EVENT_BYTES" in message


def test_size_is_checked_before_parsing():
    # A huge garbage value must not be parsed (cost) and must report the size, not the JSON.
    message = decode_error(b"x" * (CODEC.max_bytes + 1))
    assert f"the limit is {CODEC.max_bytes}" in message


# --- building and encoding ------------------------------------------------------------------
@pytest.mark.parametrize(
    "data, kwargs, expected",
    [
        ({"user_id": 5, "item_id": "i", "action": "view"}, {}, "data.user_id:"),
        ({"user_id": "u", "item_id": "i", "action": "dwell"}, {}, "dwell_seconds"),
        (
            {"user_id": "u", "item_id": "i", "action": "view", "extra": 1},
            {},
            "data.extra: unknown field",
        ),
        ({"user_id": "u", "item_id": "i", "action": "view"}, {"id": "a b"}, "id:"),
        (
            {"user_id": "u", "item_id": "i", "action": "view"},
            {"time": datetime(2025, 1, 1)},
            "time:",
        ),
    ],
    ids=["wrong-type", "dwell", "unknown-field", "bad-id", "naive-time"],
)
def test_create_raises_invalid_event_not_validation_error(data, kwargs, expected):
    with pytest.raises(InvalidEvent) as info:
        InteractionEvent.create(data, **kwargs)
    assert type(info.value) is InvalidEvent  # not pydantic's ValidationError
    assert str(info.value).startswith("invalid marquee.interaction.v1: ")
    assert expected in str(info.value)


def test_create_rejects_a_payload_of_another_type(sample_event):
    heartbeat = sample_event("marquee.heartbeat.v1").data
    with pytest.raises(InvalidEvent, match="data:"):
        InteractionEvent.create(heartbeat)


def test_encode_enforces_future_time():
    event = InteractionEvent.create(
        {"user_id": "u", "item_id": "i", "action": "view"},
        time=datetime.now(UTC) + timedelta(hours=1),
    )
    with pytest.raises(InvalidEvent, match="in the future"):
        CODEC.encode(event)
    assert EventCodec(max_clock_skew_seconds=7200).encode(event)


def test_encode_enforces_size():
    event = RecommendationsEvent.create(
        {
            "request_id": "r",
            "user_id": "u",
            "strategy": "popularity",
            "items": [{"item_id": f"item-{n}", "score": 1.0} for n in range(50)],
        }
    )
    size = len(CODEC.encode(event))
    with pytest.raises(InvalidEvent, match=f"event is {size} bytes; the limit is 1000"):
        EventCodec(max_bytes=1000).encode(event)


def test_decode_all_takes_a_valid_array_in_one_pass_and_refuses_any_bad_one():
    items = [interaction(id=f"e-{n}") for n in range(3)]
    decoded = CODEC.decode_all(json.dumps(items).encode())
    assert [e.id for e in decoded] == ["e-0", "e-1", "e-2"]
    items[1]["data"]["action"] = "blink"
    with pytest.raises(InvalidEvent, match="data.action"):
        CODEC.decode_all(json.dumps(items).encode())
    with pytest.raises(InvalidEvent, match="in the future"):
        CODEC.decode_all(json.dumps([interaction(time=now_iso(days=1))]).encode())


# --- impressions ----------------------------------------------------------------------------


def test_an_interaction_without_impression_id_is_still_valid():
    """The field is additive: events written before it decode unchanged."""
    event = CODEC.decode(json.dumps(interaction()).encode(), topic="interactions")
    assert event.data.impression_id is None


def test_an_impression_shows_each_position_once(sample_event):
    doc = json.loads(CODEC.encode(sample_event("marquee.impression.v1")))
    doc["data"]["items"][1]["position"] = 1
    with pytest.raises(InvalidEvent, match="each position may be shown once"):
        CODEC.decode(json.dumps(doc).encode(), topic="impressions")


@pytest.mark.parametrize(("field", "value"), [("position", 0), ("position", 201), ("score", "NaN")])
def test_an_impression_refuses_impossible_slots(sample_event, field, value):
    doc = json.loads(CODEC.encode(sample_event("marquee.impression.v1")))
    doc["data"]["items"][0][field] = value
    with pytest.raises(InvalidEvent, match=f"items.0.{field}"):
        CODEC.decode(json.dumps(doc).encode(), topic="impressions")
