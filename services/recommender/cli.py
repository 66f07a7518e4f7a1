"""``marquee eval``: bare ALS, popularity and the served recommender on MovieLens-100k."""

from __future__ import annotations

import json
import sys
import time

from shared.cli.argtypes import positive_int
from shared.config import Settings
from shared.data import movielens
from shared.errors import ConfigurationError

from .confidence import Weights
from .settings import RecommenderSettings

MODELS = ("als", "popularity", "served")
# Listed here, not imported from .evaluation: importing implicit (and scipy) would add
# ~0.4 s to every `marquee` command, so it waits until `marquee eval` actually runs.
PROTOCOLS = ("per_user_temporal", "global_temporal")


def register(commands) -> None:
    parser = commands.add_parser(
        "eval", help="ALS vs popularity vs the served recommender on MovieLens-100k"
    )
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.add_argument(
        "--protocol",
        choices=PROTOCOLS,
        action="append",
        help="run only this protocol (repeatable; default: all)",
    )
    # Unset flags keep AlsParams' defaults (the service's).
    parser.add_argument("--factors", type=positive_int)
    parser.add_argument("--regularization", type=float)
    parser.add_argument("--alpha", type=float)
    parser.add_argument("--iterations", type=positive_int)
    parser.add_argument("--random-state", type=int)
    parser.add_argument(
        "--threads", type=int, default=0, help="implicit's threads (default 0: all cores)"
    )
    parser.set_defaults(handler=run)


def progress(message: str) -> None:
    print(f"eval: {message}", file=sys.stderr, flush=True)


def table(result: dict) -> str:
    lines = [f"{'protocol':<18} {'model':<11} {'P@10':>7} {'NDCG@10':>8} {'vs popularity':>16}"]
    for name, protocol in result["protocols"].items():
        models = protocol["models"]
        base = models["popularity"]
        for model in MODELS:
            p, n = models[model]["precision@10"], models[model]["ndcg@10"]
            ratio = f"{p / base['precision@10']:.2f}x / {n / base['ndcg@10']:.2f}x"
            lines.append(f"{name:<18} {model:<11} {p:>7.4f} {n:>8.4f} {ratio:>16}")
        lines.append(
            f"{'':<18} {protocol['test_users']} test users "
            f"({protocol['cold_test_users']} without factors), {protocol['seconds']:.1f} s"
        )
    return "\n".join(lines)


def run(args, settings: Settings) -> int:
    from .evaluation import evaluate
    from .model import AlsParams

    # The service's weights when its settings are loaded, the defaults otherwise.
    weights = (
        Weights.from_settings(settings) if isinstance(settings, RecommenderSettings) else Weights()
    )
    try:
        fields = ("factors", "regularization", "alpha", "iterations", "random_state")
        params = AlsParams(**{f: getattr(args, f) for f in fields if getattr(args, f) is not None})
    except ValueError as exc:  # the CLI turns this into a one-line error, exit code 2
        raise ConfigurationError(f"invalid ALS parameters: {exc}") from exc
    started = time.monotonic()
    progress("loading MovieLens-100k")
    ratings = movielens.load_ratings()  # ConfigurationError (with the install hint) if absent
    result = evaluate(
        ratings,
        params,
        protocols=args.protocol or PROTOCOLS,
        weights=weights,
        num_threads=args.threads,
        progress=progress,
    )
    progress(f"finished in {time.monotonic() - started:.1f} s")
    print(json.dumps(result, indent=2) if args.json else table(result))
    return 0
