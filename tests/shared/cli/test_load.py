"""`marquee load interactions`: its options make the stream's spec, never one in the future."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from shared.cli.load import spec_from
from shared.cli.main import build_parser, main
from shared.errors import ConfigurationError

NOW = datetime(2026, 5, 6, 7, 8, 9, tzinfo=UTC)


def args(*words: str):
    return build_parser().parse_args(["load", "interactions", *words])


def test_options_make_the_spec_ending_at_todays_midnight_by_default():
    spec = spec_from(args("--users", "5", "--items", "3", "--events", "100", "--seed", "9"), NOW)
    assert (spec.users, spec.items, spec.events, spec.seed, spec.days) == (5, 3, 100, 9, 30.0)
    assert spec.end == datetime(2026, 5, 6, tzinfo=UTC)
    explicit = args("--users", "5", "--items", "3", "--events", "1", "--start", "2025-02-03T04:05Z")
    assert spec_from(explicit, NOW).start_minute == datetime(2025, 2, 3, 4, 5, tzinfo=UTC)


def test_a_span_into_the_future_is_refused_before_anything_is_sent():
    later = args("--users", "5", "--items", "3", "--events", "1", "--start", "2026-05-01T00:00Z")
    with pytest.raises(ConfigurationError, match="in the future"):
        spec_from(later, NOW)


@pytest.mark.parametrize(
    "words, message",
    [
        (["--users", "0", "--items", "3", "--events", "1"], "--users: invalid positive integer"),
        (["--users", "2", "--items", "3", "--events", "1", "--days", "0"], "days must cover"),
        (["--users", "2", "--items", "3"], "--events"),
    ],
)
def test_bad_options_are_one_line_exit_2(capsys, words, message):
    try:
        code = main(["--env-file", "", "load", "interactions", *words])
    except SystemExit as exc:  # argparse's own usage errors
        code = exc.code
    err = capsys.readouterr().err
    assert code == 2
    assert message in err and len(err.strip().splitlines()) == 1, err
