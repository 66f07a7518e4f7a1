"""Percentiles, rates and generation timings for the panels."""

from __future__ import annotations

import pytest

from services.dashboard.stats import generation_numbers, percentile, rate, summary


def test_percentile_interpolates_between_ranks():
    values = [1.0, 2.0, 3.0, 4.0]
    assert percentile(values, 0) == 1.0
    assert percentile(values, 50) == 2.5
    assert percentile(values, 100) == 4.0
    assert percentile([7.0], 95) == 7.0
    assert percentile([], 50) is None
    assert percentile([1.0, float("nan"), 3.0], 50) == 2.0
    with pytest.raises(ValueError):
        percentile(values, 101)


def test_summary_names_its_percentiles():
    assert summary([1.0] * 10) == {"n": 10, "p50": 1.0, "p95": 1.0, "p99": 1.0}
    assert summary([]) == {"n": 0, "p50": None, "p95": None, "p99": None}


def test_tokens_per_second_is_the_decode_rate_after_the_first_token():
    numbers = generation_numbers(
        101, {"queue_seconds": 0.5, "first_token_seconds": 1.0, "total_seconds": 3.0}
    )
    assert numbers == {
        "ttft_seconds": 1.0,
        "tokens_per_second": 50.0,
        "latency_seconds": 3.0,
        "queue_seconds": 0.5,
    }


def test_tokens_per_second_without_a_first_token_time():
    assert generation_numbers(20, {"total_seconds": 4.0})["tokens_per_second"] == 5.0
    assert generation_numbers(0, {"total_seconds": 4.0})["tokens_per_second"] is None
    assert generation_numbers(5, {})["tokens_per_second"] is None
    assert generation_numbers(5, {"total_seconds": "soon"})["latency_seconds"] is None


def test_rate_between_two_samples():
    assert rate((0.0, 100), (2.0, 300)) == 100.0
    assert rate((0.0, 300), (2.0, 100)) == 0.0  # topic recreated
    assert rate((2.0, 100), (2.0, 300)) == 0.0
