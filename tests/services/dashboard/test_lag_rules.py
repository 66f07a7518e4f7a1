"""Lag status rules and lag in seconds on crafted commit histories."""

from __future__ import annotations

import pytest

from services.dashboard.lag import LagTime, Observation, Status, evaluate, lag_seconds

SIZE = 5


def history(*points: tuple[int | None, int], step: float = 2.0) -> list[Observation]:
    """Observations every ``step`` seconds from (committed, end) pairs."""
    return [Observation(i * step, c, e) for i, (c, e) in enumerate(points)]


def status(points, owned: bool = True, size: int = SIZE) -> Status:
    return evaluate(history(*points), size=size, owned=owned).status


def test_ok_when_lag_reaches_zero_within_the_window():
    # Lag 0 once is enough, even if it grew afterwards.
    assert status([(10, 15), (20, 20), (25, 30), (30, 40), (35, 50)]) is Status.OK


def test_ok_when_lag_goes_down_at_times():
    assert status([(10, 50), (20, 55), (30, 58), (40, 70), (60, 72)]) is Status.OK


def test_warn_when_consuming_but_lag_never_decreases():
    result = evaluate(
        history((10, 20), (12, 25), (15, 30), (18, 34), (20, 40)), size=SIZE, owned=True
    )
    assert result.status is Status.WARN
    assert result.lag == 20 and result.complete
    assert "grew" in result.reason


def test_warn_tolerates_flat_lag():
    # Burrow: lag "fixed or increasing" while the offset moves is a warning.
    assert status([(10, 20), (20, 30), (30, 40), (40, 50), (50, 60)]) is Status.WARN


def test_stall_when_assigned_but_offset_does_not_move():
    result = evaluate(
        history((10, 20), (10, 22), (10, 22), (10, 30), (10, 31)), size=SIZE, owned=True
    )
    assert result.status is Status.STALL
    assert result.lag == 21


def test_stall_even_when_no_new_messages_arrive():
    assert status([(10, 20)] * SIZE) is Status.STALL


def test_stop_when_nobody_owns_the_partition_and_it_does_not_move():
    result = evaluate(history(*[(10, 20 + i) for i in range(SIZE)]), size=SIZE, owned=False)
    assert result.status is Status.STOP
    assert "no live group member" in result.reason


def test_a_consumer_that_just_left_is_not_stopped_until_a_full_window_passes():
    # Moved within the window, then its member left: lag grows, offsets moved -> WARN, not STOP.
    assert status([(10, 20), (15, 25), (15, 30), (15, 35), (15, 40)], owned=False) is Status.WARN


def test_rewind_when_the_committed_offset_goes_back():
    result = evaluate(
        history((100, 120), (110, 125), (40, 130), (50, 135), (60, 140)), size=SIZE, owned=True
    )
    assert result.status is Status.REWIND
    assert "110 to 40" in result.reason


def test_rewind_is_reported_even_if_lag_was_zero_in_the_window():
    assert status([(100, 100), (100, 100), (0, 100)]) is Status.REWIND


def test_unknown_without_a_committed_offset():
    result = evaluate(history((None, 10), (None, 20)), size=SIZE, owned=True)
    assert result.status is Status.UNKNOWN
    assert result.lag is None
    assert evaluate([], size=SIZE, owned=False).status is Status.UNKNOWN


def test_observations_before_the_first_commit_do_not_count():
    # Two observations with a commit: the window is not complete, so no trend is judged yet.
    result = evaluate(
        history((None, 10), (None, 12), (None, 14), (5, 16), (5, 18)), size=SIZE, owned=True
    )
    assert result.status is Status.OK and not result.complete
    assert "window filling (2 of 5" in result.reason


def test_negative_lag_clamps_to_zero():
    # End offset sampled a moment before the commit: committed > end.
    obs = Observation(0.0, 105, 100)
    assert obs.lag == 0
    result = evaluate([obs], size=SIZE, owned=True)
    assert result.lag == 0 and result.status is Status.OK


def test_only_the_newest_observations_count():
    # An old zero-lag observation outside the window does not make a stall OK.
    points = [(10, 10)] + [(10, 20 + i) for i in range(SIZE)]
    assert status(points) is Status.STALL


def test_window_must_hold_at_least_two_observations():
    with pytest.raises(ValueError):
        evaluate(history((1, 2)), size=1, owned=True)


# -- lag in seconds ---------------------------------------------------------------------------
ENDS = [(0.0, 100), (10.0, 200), (20.0, 300)]  # 10 messages/s, newest sample at t=20


def test_lag_seconds_interpolates_between_samples():
    # Message 149 was appended half-way between t=0 and t=10.
    found = lag_seconds(149, ENDS, now=20.0)
    assert found == LagTime(pytest.approx(15.0))
    assert not found.lower_bound


def test_lag_seconds_is_zero_when_caught_up_or_past_the_end():
    assert lag_seconds(300, ENDS, now=25.0) == LagTime(0.0)
    assert lag_seconds(310, ENDS, now=25.0) == LagTime(0.0)  # negative lag clamps


def test_lag_seconds_extrapolates_before_the_history_at_its_rate():
    # 100 messages before the first sample at 10 messages/s: appended at t=-10.
    found = lag_seconds(0, ENDS, now=20.0)
    assert found.seconds == pytest.approx(30.0) and not found.lower_bound


def test_lag_seconds_is_a_lower_bound_when_nothing_was_appended_meanwhile():
    idle = [(0.0, 100), (10.0, 100), (20.0, 100)]
    found = lag_seconds(50, idle, now=20.0)
    assert found == LagTime(20.0, lower_bound=True)


def test_lag_seconds_unknown_without_commit_or_history():
    assert lag_seconds(None, ENDS, now=20.0) is None
    assert lag_seconds(5, [], now=20.0) is None


def test_lag_seconds_after_the_topic_was_recreated():
    # End offsets fell from 300 to 10: only the history since then dates committed offset 5.
    found = lag_seconds(5, [(0.0, 300), (10.0, 10)], now=12.0)
    assert found.lower_bound and found.seconds == pytest.approx(2.0)


def test_the_lag_rules_import_nothing_but_the_standard_library():
    import ast
    import sys
    from pathlib import Path

    import services.dashboard.lag as lag

    tree = ast.parse(Path(lag.__file__).read_text())
    imported = {
        (node.module if isinstance(node, ast.ImportFrom) else alias.name).split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.Import | ast.ImportFrom)
        for alias in node.names
    }
    assert imported <= set(sys.stdlib_module_names) | {"__future__"}, imported
