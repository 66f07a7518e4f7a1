"""``marquee eval``: bare ALS, popularity and the served recommender on MovieLens-100k, and
the content-based cold start of items nobody has read."""

from __future__ import annotations

import json
import sys
import time

from shared.cli.argtypes import positive_int
from shared.config import Settings
from shared.data import movielens
from shared.errors import ConfigurationError, MarqueeError

from .confidence import Weights
from .settings import RecommenderSettings

MODELS = ("als", "popularity", "served")
# Listed here, not imported from .evaluation: importing implicit (and scipy) would add
# ~0.4 s to every `marquee` command, so it waits until `marquee eval` actually runs.
TEMPORAL = ("per_user_temporal", "global_temporal")
PROTOCOLS = (*TEMPORAL, "item_cold_start")


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
        if name not in TEMPORAL:
            continue
        models = protocol["models"]
        base = models["popularity"]
        for model in (*MODELS, "hybrid"):
            if model not in models:
                continue
            p, n = models[model]["precision@10"], models[model]["ndcg@10"]
            ratio = f"{p / base['precision@10']:.2f}x / {n / base['ndcg@10']:.2f}x"
            lines.append(f"{name:<18} {model:<11} {p:>7.4f} {n:>8.4f} {ratio:>16}")
        lines.append(
            f"{'':<18} {protocol['test_users']} test users "
            f"({protocol['cold_test_users']} without factors), {protocol['seconds']:.1f} s"
        )
    if cold := result["protocols"].get("item_cold_start"):
        lines.append("")
        lines.append(cold_table(cold))
    return "\n".join(lines)


def cold_table(cold: dict) -> str:
    """The item_cold_start protocol: mean ± 95% interval over its seeds."""
    random = cold["models"]["random"]["ndcg@10"]["mean"]
    lines = [f"{'item_cold_start':<20} {'NDCG@10':>16} {'recall@10':>16} {'vs random':>10}"]
    for name, metrics in cold["models"].items():
        n, r = metrics["ndcg@10"], metrics["recall@10"]
        label = f"{name} (served)" if name == cold["default"] else name
        lines.append(
            f"{label:<20} {n['mean']:>8.4f} ± {n['ci95']:.4f} {r['mean']:>8.4f} ± {r['ci95']:.4f}"
            f" {n['mean'] / random:>9.2f}x"
        )
    default = cold["default"]
    for other, d in cold[f"{default}_minus"]["ndcg@10"].items():
        lines.append(
            f"NDCG@10 {default} - {other}, paired by seed: {d['mean']:+.4f} ± {d['ci95']:.4f}"
        )
    lines.append(
        f"{cold['held_out_items']} held-out items, {cold['test_users']} test users, "
        f"seeds {cold['seeds']}, {cold['seconds']:.1f} s"
    )
    return "\n".join(lines)


def content_vectors(settings: Settings, films: list, required: bool) -> dict | None:
    """MovieLens's films as :func:`.item_cold_start.movielens_vectors` represents them;
    ``None`` when the encoder is not built and nothing needs it."""
    from .embedding.encoder import Encoder
    from .item_cold_start import movielens_vectors

    settings = settings if isinstance(settings, RecommenderSettings) else RecommenderSettings()
    try:
        encoder = Encoder(settings.content_model_dir())
    except MarqueeError as exc:
        if required:
            raise
        progress(f"{exc}; the hybrid rows are left out")
        return None
    content = movielens_vectors(encoder, films)
    progress(f"embedded {len(films):,} films ({content['items_per_second']:.0f}/s)")
    return content


def run(args, settings: Settings) -> int:
    from .evaluation import evaluate
    from .item_cold_start import evaluate_item_cold_start
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
    protocols = args.protocol or PROTOCOLS
    started = time.monotonic()
    progress("loading MovieLens-100k")
    ratings = movielens.load_ratings()  # ConfigurationError (with the install hint) if absent
    content = content_vectors(
        settings, movielens.load_films(), required="item_cold_start" in protocols
    )
    temporal = [p for p in protocols if p in TEMPORAL]
    result = evaluate(
        ratings,
        params,
        protocols=temporal,
        weights=weights,
        num_threads=args.threads,
        content=dict(zip(content["ids"], content["vectors"]["minilm"], strict=True))
        if content
        else None,
        progress=progress,
    )
    if "item_cold_start" in protocols:
        result["protocols"]["item_cold_start"] = evaluate_item_cold_start(
            ratings,
            content["ids"],
            content["vectors"],
            params,
            weights=weights,
            num_threads=args.threads,
            progress=progress,
        )
    if content:
        result["content"] = {
            "model": content["model"],
            "items_per_second": content["items_per_second"],
            "dimensions": {k: int(v.shape[1]) for k, v in content["vectors"].items()},
        }
    progress(f"finished in {time.monotonic() - started:.1f} s")
    print(json.dumps(result, indent=2) if args.json else table(result))
    return 0
