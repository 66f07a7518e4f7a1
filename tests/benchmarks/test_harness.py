"""The benchmark runner: figures a machine cannot take (no GPU) are skipped, not fatal."""

import json

import pytest

from benchmarks import __main__ as cli
from benchmarks import harness
from benchmarks.harness import BenchmarkError, BenchmarkSkipped, Result


@pytest.fixture
def registry(monkeypatch):
    """Two figures without Kafka: one that runs, one that needs hardware this run lacks."""

    def ok(ctx):
        return Result(value=30.0, baseline_name="base", baseline_value=10.0)

    def gpu(ctx):
        raise BenchmarkSkipped("needs a GPU: none here")

    registry = {}
    for name, func in (("t_ok", ok), ("t_gpu", gpu)):
        registry[name] = harness.Benchmark(
            name=name, unit="ops/s", description=name, command=f"make bench NAME={name}",
            func=func, needs_kafka=False,
        )  # fmt: skip
    monkeypatch.setattr(cli, "discover", lambda: registry)
    return registry


def test_an_unnamed_figure_that_needs_a_gpu_is_skipped_and_the_rest_recorded(
    registry, tmp_path, capsys
):
    assert cli.run(["--docs", str(tmp_path)]) == 0
    assert "skipped: needs a GPU: none here" in capsys.readouterr().out
    recorded = json.loads((tmp_path / "benchmarks.json").read_text())
    assert [(e["name"], e["ratio"]) for e in recorded] == [("t_ok", 3.0)]


def test_a_figure_named_on_the_command_line_that_cannot_run_is_an_error(registry, tmp_path):
    with pytest.raises(BenchmarkSkipped, match="needs a GPU"):
        cli.run(["t_gpu", "--docs", str(tmp_path)])
    assert not (tmp_path / "benchmarks.json").exists()


def test_an_unknown_name_lists_modules_left_out_for_a_missing_package(
    registry, tmp_path, monkeypatch
):
    monkeypatch.setitem(harness.UNAVAILABLE, "recommender_serving", "implicit")
    monkeypatch.setattr(cli, "UNAVAILABLE", harness.UNAVAILABLE)
    with pytest.raises(BenchmarkError, match="recommender_serving needs implicit"):
        cli.run(["recommender_serving_p99", "--docs", str(tmp_path)])


@pytest.mark.parametrize(
    ("value", "verdict", "mark"), [(0.05, "meets", "✅"), (0.085, "MISSES", "❌")]
)
def test_a_figure_with_a_target_range_is_marked_in_or_out_of_it(tmp_path, value, verdict, mark):
    bench = harness.Benchmark(
        name="t_rate", unit="of tests", description="t", command="make bench NAME=t_rate",
        func=lambda ctx: None, higher_is_better=False, target_range=(0.03, 0.07),
    )  # fmt: skip
    result = Result(value=value, baseline_name="binomial", baseline_value=0.2)
    assert f"{verdict} the target (value 0.03–0.07 of tests)" in harness.summary(bench, result)
    docs = harness.Docs(tmp_path)
    docs.record([harness.entry(bench, result)], {"t_rate": bench})
    assert f"{harness.fmt(value)} of tests {mark} target 0.03–0.07 |" in docs.md_path.read_text()


@pytest.mark.parametrize(
    ("bounds", "value", "text", "mark"),
    [
        ((None, 20.0), 55.6, "≤ 20", "❌"),
        ((None, 20.0), 14.0, "≤ 20", "✅"),
        ((20_000.0, None), 3_355.0, "≥ 20,000", "❌"),
    ],
)
def test_an_absolute_target_beside_the_ratio_is_marked_too(tmp_path, bounds, value, text, mark):
    bench = harness.Benchmark(
        name="t_abs", unit="ms", description="t", command="make bench NAME=t_abs",
        func=lambda ctx: None, target_ratio=0.7, target_range=bounds,
    )  # fmt: skip
    result = Result(value=value, baseline_name="sdk", baseline_value=value)
    docs = harness.Docs(tmp_path)
    docs.record([harness.entry(bench, result)], {"t_abs": bench})
    assert f"{harness.fmt(value)} ms {mark} target {text} |" in docs.md_path.read_text()
