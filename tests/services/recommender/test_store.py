"""The store's pure part: how a batch becomes one Postgres array literal per column."""

from dataclasses import fields
from datetime import UTC, datetime

from services.recommender.store import _TYPES, InteractionRow, _literal


def test_every_field_of_a_row_has_a_column_type():
    assert set(_TYPES) == {f.name for f in fields(InteractionRow)}


def test_text_elements_are_quoted_with_quotes_and_backslashes_escaped():
    values = ('say "hi"', "back\\slash", "a,b", "{braces}", "NULL", " spaced ", "é")
    assert _literal("text", values) == (
        '{"say \\"hi\\"","back\\\\slash","a,b","{braces}","NULL"," spaced ","é"}'
    )


def test_numbers_round_trip_and_none_is_null():
    assert _literal("real", (1.5, None, 1e-07, 1 / 3)) == "{1.5,NULL,1e-07,0.3333333333333333}"
    assert _literal("bigint", (0, 2**40)) == "{0,1099511627776}"


def test_times_keep_their_offset():
    when = datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=UTC)
    assert _literal("timestamptz", (when,)) == '{"2024-05-06T07:08:09.123456+00:00"}'
