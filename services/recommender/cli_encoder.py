"""``marquee encoder build``: convert the content encoder (all-MiniLM-L6-v2) to ONNX."""

from __future__ import annotations

import time
from pathlib import Path

from shared.config import Settings


def register(commands) -> None:
    parser = commands.add_parser("encoder", help="the recommender's content encoder")
    actions = parser.add_subparsers(dest="action", required=True)
    build = actions.add_parser(
        "build", help="convert all-MiniLM-L6-v2 from its wheel to ONNX (skipped when up to date)"
    )
    build.add_argument("--out", type=Path, help="model directory (default: the configured one)")
    build.set_defaults(handler=run_build)


def run_build(args, _: Settings) -> int:
    from .embedding.convert import build
    from .settings import RecommenderSettings

    out = args.out or RecommenderSettings().content_model_dir()
    started = time.monotonic()
    if build(out):
        print(f"content encoder built in {out} ({time.monotonic() - started:.1f} s)")
    else:
        print(f"content encoder in {out} is up to date")
    return 0
