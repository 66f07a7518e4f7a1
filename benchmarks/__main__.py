"""``python -m benchmarks [NAME ...] [--list]``: run benchmarks, record them under docs/.

Reads settings like every entrypoint (environment, then ``.run/marquee.env``);
``MARQUEE_BENCH_EVENTS`` sets the default event count.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from pathlib import Path

from shared.config import Settings, load_settings
from shared.errors import MarqueeError
from shared.kafka.client import client_options

from .harness import (
    UNAVAILABLE,
    Benchmark,
    BenchmarkError,
    BenchmarkSkipped,
    Context,
    Docs,
    discover,
    entry,
    summary,
)

DOCS_DIR = Path(__file__).resolve().parent.parent / "docs"
DEFAULT_EVENTS = 50_000


def _parser(registry: dict[str, Benchmark]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="Run Marquee's benchmarks; each figure is a ratio against a baseline "
        "measured in the same run. Results go to docs/benchmarks.json and docs/benchmarks.md.",
    )
    parser.add_argument("names", nargs="*", metavar="NAME", help="benchmarks to run (default: all)")
    parser.add_argument("--list", action="store_true", help="list the benchmarks and exit")
    parser.add_argument(
        "--events",
        type=_positive,
        default=None,
        help="events per side and repetition "
        f"(default: $MARQUEE_BENCH_EVENTS or {DEFAULT_EVENTS:,})",
    )
    parser.add_argument("--repeat", type=_positive, default=3, help="interleaved repetitions")
    parser.add_argument("--docs", type=Path, default=DOCS_DIR, help="where the results go")
    parser.epilog = "benchmarks: " + ", ".join(registry)
    return parser


def _positive(text: str) -> int:
    try:
        value = int(text.replace("_", "").replace(",", ""))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be at least 1")
    return value


def _default_events() -> int:
    raw = os.environ.get("MARQUEE_BENCH_EVENTS")
    if raw is None:
        return DEFAULT_EVENTS
    try:
        return _positive(raw)
    except argparse.ArgumentTypeError as exc:
        raise BenchmarkError(f"MARQUEE_BENCH_EVENTS: {exc}") from None


def _check_kafka(settings: Settings) -> None:
    """Fail in seconds, with what to do, instead of a 30 s bootstrap timeout and a traceback."""
    from kafka.admin import KafkaAdminClient
    from kafka.errors import KafkaError

    # kafka-python logs every refused connection; the one-line error below says it all.
    kafka_log = logging.getLogger("kafka")
    level = kafka_log.level
    kafka_log.setLevel(logging.CRITICAL)
    try:
        admin = KafkaAdminClient(
            **client_options(settings, bootstrap_timeout_ms=5_000, request_timeout_ms=5_000)
        )
        try:
            admin.describe_cluster()
        finally:
            admin.close()
    except (KafkaError, OSError) as exc:
        raise BenchmarkError(
            f"cannot reach Kafka at {settings.kafka_bootstrap_servers}: run `make up` ({exc})"
        ) from None
    finally:
        kafka_log.setLevel(level)


def run(argv: list[str] | None = None) -> int:
    registry = discover()
    args = _parser(registry).parse_args(argv)
    for module, package in UNAVAILABLE.items():
        print(f"left out: benchmarks/{module}.py needs {package}, which is not installed")
    if args.list:
        width = max(map(len, registry), default=0)
        for bench in registry.values():
            print(f"{bench.name:<{width}}  [{bench.unit}]  {bench.description}")
        return 0
    unknown = [n for n in args.names if n not in registry]
    if unknown:
        missing = "".join(
            f"; module {module} needs {package}, which is not installed"
            for module, package in UNAVAILABLE.items()
        )
        raise BenchmarkError(
            f"unknown benchmark(s) {', '.join(unknown)}; known: {', '.join(registry)}{missing}"
        )
    selected = [registry[n] for n in dict.fromkeys(args.names)] or list(registry.values())
    if args.events is None:
        args.events = _default_events()

    settings = load_settings()
    if any(b.needs_kafka for b in selected):
        _check_kafka(settings)

    docs = Docs(args.docs)
    ctx = Context(settings=settings, args=args, progress=lambda msg: print(f"  {msg}", flush=True))
    recorded = 0
    for i, bench in enumerate(selected, 1):
        print(f"[{i}/{len(selected)}] {bench.name}: {bench.unit}", flush=True)
        started = time.monotonic()
        try:
            result = bench.func(ctx)
        except BenchmarkSkipped as exc:
            # Asked for by name, a figure this machine cannot take is an error.
            if bench.name in args.names:
                raise
            ctx.progress(f"skipped: {exc}")
            continue
        for note in result.notes:
            ctx.progress(note)
        print(summary(bench, result), flush=True)
        # Record each figure as it lands: a later failure must not lose it.
        docs.record([entry(bench, result)], registry)
        recorded += 1
        ctx.progress(f"took {time.monotonic() - started:.0f} s; recorded in {docs.json_path}")
    if recorded:
        print(f"wrote {docs.json_path} and {docs.md_path}")
    else:
        print("nothing recorded: every selected benchmark was skipped")
    return 0


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    # kafka-python warns about routine reconnects; keep only its errors.
    logging.getLogger("kafka").setLevel(logging.ERROR)
    try:
        return run(argv)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BenchmarkError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except MarqueeError as exc:
        print(f"error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:
        # kafka-python's errors, without importing kafka where no benchmark needs it.
        if type(exc).__module__.partition(".")[0] != "kafka":
            raise
        print(f"error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
