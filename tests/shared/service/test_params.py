"""Every query parameter is parsed one strict way: a clear 400, never a 500."""

from __future__ import annotations

import pytest

from shared.service import params
from shared.service.params import BadParameter


@pytest.mark.parametrize("raw", ["²", "1²", "٣", "-1", "+1", " 1", "1.0", "1e3", "", "0x10"])
def test_integers_are_ascii_digits_only(raw):
    with pytest.raises(BadParameter, match="k must be a whole number from 1 to 200"):
        params.integer({"k": raw}, "k", 10, low=1, high=200)


@pytest.mark.parametrize("raw", ["0", "201", "9" * 30])
def test_integers_are_bounded(raw):
    with pytest.raises(BadParameter):
        params.integer({"k": raw}, "k", 10, low=1, high=200)


def test_integers_in_range_and_the_default():
    assert params.integer({"k": "200"}, "k", 10, low=1, high=200) == 200
    assert params.integer({}, "k", 10, low=1, high=200) == 10


@pytest.mark.parametrize(
    "raw", ["²h", "99999999999999999999d", "1" + "0" * 300 + "s", "0h", "24", "h", "1w", "-1h"]
)
def test_durations_refuse_what_would_overflow_or_mislead(raw):
    with pytest.raises(BadParameter, match="window must look like 90s"):
        params.duration({"window": raw}, "window", max_seconds=365 * 86_400)


def test_durations_are_capped_and_converted():
    assert params.duration({"window": "24h"}, "window", max_seconds=86_400) == 86_400
    with pytest.raises(BadParameter, match="at most 1 days"):
        params.duration({"window": "25h"}, "window", max_seconds=86_400)
    assert params.duration({}, "window", max_seconds=60) is None


@pytest.mark.parametrize("raw", ["s1\x00", "a\nb", "x" * 65, ""])
def test_text_refuses_control_characters_and_bounds_length(raw):
    with pytest.raises(BadParameter, match="kind must be 1 to 64 characters"):
        params.text({"kind": raw}, "kind", max_length=64)


def test_ids_take_what_the_schemas_allow_braces_included():
    assert params.identifier("{brace}") == "{brace}"
    assert params.identifier("é/ü") == "é/ü"
    for bad in ("s1\x00", "", "x" * 129):
        with pytest.raises(BadParameter, match="user id must be 1 to 128 characters"):
            params.identifier(bad, "user id")


def test_flags():
    assert params.flag({"x": "Yes"}, "x", False) is True
    assert params.flag({}, "x", True) is True
    with pytest.raises(BadParameter, match="x must be true or false"):
        params.flag({"x": "maybe"}, "x", False)
