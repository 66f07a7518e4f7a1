"""The benchmark registry, its result type, and the writer of ``docs/benchmarks.{json,md}``.

A benchmark is a function that measures a figure *and* its baseline in the same run::

    @benchmark("publisher_throughput", unit="events/s", description="...",
               command="make bench NAME=publisher_throughput", target_ratio=0.8)
    def publisher_throughput(ctx: Context) -> Result:
        ...
        return Result(sdk_rate, "bare producer", bare_rate)

Absolute numbers follow the machine and its load; a ratio against a baseline measured
next to it, interleaved, moves much less. So every figure carries one.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import pkgutil
import platform
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from shared.config import Settings
from shared.errors import MarqueeError

#: The keys of one entry in ``docs/benchmarks.json``, in this order, and no others.
ENTRY_KEYS = (
    "name",
    "value",
    "unit",
    "baseline",
    "baseline_value",
    "ratio",
    "command",
    "measured_at",
)

#: Modules of this package that hold machinery, not benchmarks.
_NOT_BENCHMARKS = {"harness", "__main__"}


class BenchmarkError(MarqueeError):
    """A benchmark could not be run or its results not recorded; the message says why."""


class BenchmarkSkipped(BenchmarkError):
    """The benchmark needs hardware this machine lacks (a GPU); ``make bench`` goes on."""


@dataclass(frozen=True)
class Result:
    """What a benchmark measured: its figure and the baseline taken in the same run."""

    value: float
    baseline_name: str
    baseline_value: float
    #: Free-form lines worth printing (repetitions, payload size); not recorded.
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class Context:
    """What a benchmark receives: settings for the local stack and the CLI's arguments."""

    settings: Settings
    args: argparse.Namespace
    progress: Callable[[str], None] = print

    @property
    def events(self) -> int:
        return self.args.events

    @property
    def repeat(self) -> int:
        return self.args.repeat


@dataclass(frozen=True)
class Benchmark:
    name: str
    unit: str
    description: str
    command: str
    func: Callable[[Context], Result]
    #: False for latency-style figures: then ratio = baseline / value, so > 1 is still better.
    higher_is_better: bool = True
    #: The ratio the issue asks for (``None``: no target, just a figure to watch).
    target_ratio: float | None = None
    #: Where the figure itself must land: an absolute target beside the ratio's (``(None,
    #: 20)``: at most 20; ``(20_000, None)``: at least 20,000), or a range for calibration
    #: figures (a false-positive rate) that are right neither higher nor lower.
    target_range: tuple[float | None, float | None] | None = None
    #: Whether the benchmark needs the broker (the CLI checks it is reachable first).
    needs_kafka: bool = True

    def ratio(self, result: Result) -> float:
        """Oriented so that > 1 means better than the baseline, whichever way "better" is."""
        num, den = (
            (result.value, result.baseline_value)
            if self.higher_is_better
            else (result.baseline_value, result.value)
        )
        if den <= 0:
            raise BenchmarkError(f"{self.name}: cannot form a ratio with {den} as denominator")
        return num / den

    def ratio_rule(self) -> str:
        return "value ÷ baseline" if self.higher_is_better else "lower is better: baseline ÷ value"

    def meets_target(self, ratio: float) -> bool | None:
        return None if self.target_ratio is None else ratio >= self.target_ratio

    def in_target_range(self, value: float) -> bool | None:
        if self.target_range is None:
            return None
        low, high = self.target_range
        return (low is None or value >= low) and (high is None or value <= high)

    def range_text(self) -> str:
        """``0.03–0.07``, ``≤ 20`` or ``≥ 20,000``."""
        low, high = self.target_range  # type: ignore[misc]
        if low is None:
            return f"≤ {high:,g}"
        if high is None:
            return f"≥ {low:,g}"
        return f"{low:,g}–{high:,g}"


_REGISTRY: dict[str, Benchmark] = {}


def benchmark(
    name: str,
    *,
    unit: str,
    description: str,
    command: str | None = None,
    higher_is_better: bool = True,
    target_ratio: float | None = None,
    target_range: tuple[float, float] | None = None,
    needs_kafka: bool = True,
) -> Callable[[Callable[[Context], Result]], Callable[[Context], Result]]:
    """Register the decorated function as the benchmark ``name``."""

    def register(func: Callable[[Context], Result]) -> Callable[[Context], Result]:
        if name in _REGISTRY and _REGISTRY[name].func is not func:
            raise BenchmarkError(f"benchmark {name!r} is registered twice")
        _REGISTRY[name] = Benchmark(
            name=name,
            unit=unit,
            description=" ".join(description.split()),
            command=command or f"make bench NAME={name}",
            func=func,
            higher_is_better=higher_is_better,
            target_ratio=target_ratio,
            target_range=target_range,
            needs_kafka=needs_kafka,
        )
        return func

    return register


#: Benchmark modules that could not be imported for a missing third-party package (a
#: machine with only the generator's dependencies, say): module -> the missing package.
UNAVAILABLE: dict[str, str] = {}


def discover() -> dict[str, Benchmark]:
    """Import every benchmark module of this package; return the registry by name.

    A module whose third-party dependency is not installed is left out and listed in
    :data:`UNAVAILABLE`; an import error in Marquee's own code still raises."""
    package = importlib.import_module(__package__)
    for module in pkgutil.iter_modules(package.__path__):
        if module.name not in _NOT_BENCHMARKS and not module.name.startswith("_"):
            try:
                importlib.import_module(f"{__package__}.{module.name}")
            except ModuleNotFoundError as exc:
                top = (exc.name or "").partition(".")[0]
                if not top or top in {"benchmarks", "services", "shared"}:
                    raise
                UNAVAILABLE[module.name] = top
    return dict(sorted(_REGISTRY.items()))


# -- presentation --------------------------------------------------------------------------
def fmt(value: float) -> str:
    """12,345 for big figures, 3 significant digits for small ones."""
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 1:
        return f"{value:,.2f}"
    return f"{value:.3g}"


def summary(bench: Benchmark, result: Result) -> str:
    """``name: 12,345 events/s vs bare producer 13,000 events/s → ratio 0.95``"""
    ratio = bench.ratio(result)
    line = (
        f"{bench.name}: {fmt(result.value)} {bench.unit} vs {result.baseline_name} "
        f"{fmt(result.baseline_value)} {bench.unit} → ratio {ratio:.2f}"
    )
    if not bench.higher_is_better:
        line += f" ({bench.ratio_rule()})"
    met = bench.meets_target(ratio)
    if met is not None:
        verdict = "meets the target" if met else "MISSES the target"
        line += f"; {verdict} (ratio ≥ {bench.target_ratio:.2f})"
    in_range = bench.in_target_range(result.value)
    if in_range is not None:
        verdict = "meets the target" if in_range else "MISSES the target"
        line += f"; {verdict} (value {bench.range_text()} {bench.unit})"
    return line


def entry(bench: Benchmark, result: Result, now: datetime | None = None) -> dict[str, Any]:
    """One ``docs/benchmarks.json`` entry, exactly :data:`ENTRY_KEYS`."""
    when = (now or datetime.now(UTC)).astimezone(UTC)
    return {
        "name": bench.name,
        "value": round(result.value, 3),
        "unit": bench.unit,
        "baseline": result.baseline_name,
        "baseline_value": round(result.baseline_value, 3),
        "ratio": round(bench.ratio(result), 4),
        "command": bench.command,
        "measured_at": when.isoformat(timespec="seconds").replace("+00:00", "Z"),
    }


# -- the docs writer -----------------------------------------------------------------------
@dataclass(frozen=True)
class Machine:
    cpus: int
    python: str
    system: str

    @classmethod
    def this(cls) -> Machine:
        # What `nproc` prints: the CPUs this process may run on, not the host's total.
        cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
        return cls(
            cpus=cpus or 1,
            python=platform.python_version(),
            system=f"{platform.system()} {platform.machine()}",
        )


@dataclass
class Docs:
    """``docs/benchmarks.json`` (the record) and ``docs/benchmarks.md`` (made from it)."""

    directory: Path
    machine: Machine = field(default_factory=Machine.this)

    @property
    def json_path(self) -> Path:
        return self.directory / "benchmarks.json"

    @property
    def md_path(self) -> Path:
        return self.directory / "benchmarks.md"

    def load(self) -> list[dict[str, Any]]:
        if not self.json_path.exists():
            return []
        try:
            data = json.loads(self.json_path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise BenchmarkError(f"cannot read {self.json_path}: {exc}; fix or delete it") from None
        if not isinstance(data, list) or not all(
            isinstance(e, dict) and set(ENTRY_KEYS) <= e.keys() for e in data
        ):
            raise BenchmarkError(
                f"{self.json_path} is not a list of entries with keys {', '.join(ENTRY_KEYS)}; "
                "fix or delete it"
            )
        return data

    def record(
        self, entries: Iterable[dict[str, Any]], registry: dict[str, Benchmark] | None = None
    ) -> None:
        """Replace these benchmarks' entries, keep every other, and rewrite both files."""
        merged = {e["name"]: e for e in self.load()}
        merged.update({e["name"]: e for e in entries})
        rows = [{k: merged[name][k] for k in ENTRY_KEYS} for name in sorted(merged)]
        self.directory.mkdir(parents=True, exist_ok=True)
        _write_atomically(self.json_path, json.dumps(rows, indent=2, ensure_ascii=False) + "\n")
        _write_atomically(self.md_path, render_markdown(rows, self.machine, registry or {}))


def _write_atomically(path: Path, text: str) -> None:
    # A run interrupted mid-write must not leave a half file that the next run can't merge.
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render_markdown(
    rows: list[dict[str, Any]], machine: Machine, registry: dict[str, Benchmark]
) -> str:
    lines = [
        "# Benchmarks",
        "",
        "<!-- Generated by `python -m benchmarks` from benchmarks.json; edits here are lost. -->",
        "",
        "Machines are noisy: the same code runs faster or slower with the hardware, the load "
        "and the hour. So every figure here is a **ratio against a baseline measured in the "
        "same run**, on the same machine, in interleaved repetitions (medians reported). "
        "Compare ratios, not absolute values. A ratio above 1 means better than the "
        "baseline: value ÷ baseline for throughput-style figures, baseline ÷ value for "
        "latency-style ones (marked *lower is better*).",
        "",
        f"Last regenerated on a machine with {machine.cpus} CPUs (`nproc`), "
        f"Python {machine.python}, {machine.system}. Entries keep the date they were "
        "measured; rerun a figure's command to refresh it.",
        "",
        "| Figure | Value | Baseline | Ratio | Reproduce with | Measured at (UTC) |",
        "|---|---:|---|---:|---|---|",
    ]
    for row in rows:
        bench = registry.get(row["name"])
        ratio = f"{row['ratio']:.2f}"
        if bench is not None:
            if not bench.higher_is_better:
                ratio += " (lower is better)"
            met = bench.meets_target(row["ratio"])
            if met is not None:
                ratio += f" {'✅' if met else '❌'} target ≥ {bench.target_ratio:.2f}"
        value = f"{fmt(row['value'])} {row['unit']}"
        in_range = bench.in_target_range(row["value"]) if bench is not None else None
        if in_range is not None:
            value += f" {'✅' if in_range else '❌'} target {bench.range_text()}"
        lines.append(
            "| "
            + " | ".join(
                _cell(c)
                for c in (
                    f"`{row['name']}`",
                    value,
                    f"{row['baseline']}: {fmt(row['baseline_value'])} {row['unit']}",
                    ratio,
                    f"`{row['command']}`",
                    row["measured_at"],
                )
            )
            + " |"
        )
    described = [(row["name"], registry[row["name"]]) for row in rows if row["name"] in registry]
    if described:
        lines += ["", "## What each figure measures", ""]
        lines += [f"- **`{name}`**: {bench.description}" for name, bench in described]
    return "\n".join(lines) + "\n"
