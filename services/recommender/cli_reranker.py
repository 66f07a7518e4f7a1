"""``marquee reranker train|list``: the learned re-ranker's offline training and its versions."""

from __future__ import annotations

import json
import sys

from shared.config import Settings, load_settings
from shared.db import make_engine

from .settings import RecommenderSettings


def register(commands) -> None:
    parser = commands.add_parser("reranker", help="the learned re-ranker (docs/reranker.md)")
    sub = parser.add_subparsers(dest="reranker_command", required=True, metavar="COMMAND")
    train = sub.add_parser(
        "train",
        help="train it on MovieLens-100k (per_user_temporal), checkpoint it in Postgres; "
        "active only if it beats ALS order",
    )
    train.add_argument("--json", action="store_true", help="print the version as JSON")
    train.set_defaults(handler=run_train)
    listing = sub.add_parser("list", help="the re-ranker versions, their NDCG and status")
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(handler=run_list)


def _store(args):
    from .reranker_store import RerankerStore

    settings = load_settings(RecommenderSettings, args.env_file)
    return RerankerStore(make_engine(settings))


def run_train(args, _: Settings) -> int:
    from shared.data.movielens import load_films, load_ratings, load_readers

    from .reranker_offline import evaluate_reranker
    from .reranker_store import checkpoint_evaluation

    result = evaluate_reranker(
        load_ratings(),
        films=load_films(),
        readers=load_readers(),
        progress=lambda m: print(f"reranker: {m}", file=sys.stderr, flush=True),
    )
    store = _store(args)
    try:
        version = checkpoint_evaluation(store, result)
    finally:
        store.engine.dispose()
    if args.json:
        print(json.dumps(_fields(version)))
    else:
        print(
            f"re-ranker version {version.version}: NDCG@10 {version.ndcg:.4f} vs ALS order "
            f"{version.baseline_ndcg:.4f} ({version.ndcg / version.baseline_ndcg:.2f}x): "
            f"{version.status}"
        )
    return 0


def _fields(version) -> dict:
    return {name: getattr(version, name) for name in version.__slots__}


def run_list(args, _: Settings) -> int:
    store = _store(args)
    try:
        versions = store.versions()
    finally:
        store.engine.dispose()
    if args.json:
        print(json.dumps([_fields(v) for v in versions], indent=2))
        return 0
    if not versions:
        print("no re-ranker versions yet: run `marquee reranker train`")
        return 0
    print(f"{'version':>7} {'status':<9} {'NDCG@10':>8} {'ALS order':>9} {'ratio':>6}")
    for v in versions:
        ratio = f"{v.ndcg / v.baseline_ndcg:.2f}x" if v.baseline_ndcg else "-"
        print(f"{v.version:>7} {v.status:<9} {v.ndcg:>8.4f} {v.baseline_ndcg:>9.4f} {ratio:>6}")
    return 0
