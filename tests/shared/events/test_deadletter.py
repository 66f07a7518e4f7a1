import base64

from shared.errors import InvalidEvent
from shared.events import EventCodec
from shared.events.deadletter import dead_letter


def test_dead_letter_keeps_bytes_reason_and_position():
    letter = dead_letter(
        service="recommender",
        topic="interactions",
        partition=3,
        offset=41,
        key=b"u1",
        value=b"\xff not utf-8",
        error=InvalidEvent("data.user_id: field required"),
    )
    assert letter.id == "interactions/3/41"
    assert base64.b64decode(letter.data.value_b64) == b"\xff not utf-8"
    assert base64.b64decode(letter.data.key_b64) == b"u1"
    assert letter.data.error == "data.user_id: field required"
    assert letter.data.error_class == "InvalidEvent"
    assert EventCodec().decode(EventCodec().encode(letter)) == letter


def test_huge_values_are_cut_and_the_reason_says_so():
    letter = dead_letter(
        service="s",
        topic="t",
        partition=0,
        offset=0,
        key=None,
        value=b"x" * 5000,
        error="too big",
        max_value_bytes=1000,
    )
    assert len(base64.b64decode(letter.data.value_b64)) == 1000
    assert "cut from 5000 to 1000 bytes" in letter.data.error
    assert letter.data.key_b64 is None
