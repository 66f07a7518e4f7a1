"""``marquee train [--evaluate-only]`` and ``marquee models``: model versions in Postgres."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime

from shared.cli.argtypes import positive_int
from shared.config import Settings, load_settings
from shared.db import make_engine

from .settings import RecommenderSettings


def register(commands) -> None:
    train = commands.add_parser(
        "train",
        help="embed the catalog's new items, retrain ALS on the stored interactions; "
        "activate it if it passes the gate",
    )
    train.add_argument(
        "--evaluate-only",
        action="store_true",
        help="score a retrain against popularity; store nothing",
    )
    train.add_argument("--json", action="store_true", help="print the outcome as JSON")
    train.set_defaults(handler=run_train)
    recommend = commands.add_parser(
        "recommend", help="a user's recommendations from the active model (as the HTTP API serves)"
    )
    recommend.add_argument("user")
    recommend.add_argument("-k", type=positive_int, default=10)
    recommend.add_argument("--include-seen", action="store_true")
    recommend.add_argument("--json", action="store_true")
    recommend.set_defaults(handler=run_recommend)
    models = commands.add_parser(
        "models", help="list model versions, their metrics and the active one"
    )
    models.add_argument("--json", action="store_true")
    models.set_defaults(handler=run_models)


def _store(args):
    from .model_store import ModelStore

    settings = load_settings(RecommenderSettings, args.env_file)
    return settings, ModelStore(make_engine(settings))


def run_train(args, _: Settings) -> int:
    from .training import retrain

    settings, store = _store(args)
    try:
        # Stored before the fit: workers learn the new version's content map from them.
        embedded = None if args.evaluate_only else _embed_catalog(settings, store, args.json)
        outcome = retrain(
            store,
            settings.als_params(),
            gate_ratio=settings.recommender_quality_gate_ratio,
            keep=settings.recommender_keep_versions,
            evaluate_only=args.evaluate_only,
        )
    finally:
        store.engine.dispose()
    if args.json:
        shown = outcome.__dict__ | {"catalog_embedded": embedded}
        print(json.dumps(shown, indent=2, default=str))
        return 0 if outcome.passed or args.evaluate_only else 1
    holdout = outcome.metrics["holdout"]
    for model in ("served", "popularity", "als"):
        m = holdout[model]
        print(f"{model:<11} P@10 {m['precision@10']:.4f}  NDCG@10 {m['ndcg@10']:.4f}")
    verdict = "passes" if outcome.passed else "FAILS"
    print(f"quality gate (>= {settings.recommender_quality_gate_ratio:g}x popularity): {verdict}")
    if outcome.version is not None:
        print(
            f"model version {outcome.version}: {outcome.status} (fit {outcome.fit_seconds:.1f} s)"
        )
    return 0 if outcome.passed or args.evaluate_only else 1


def _embed_catalog(settings: RecommenderSettings, store, quiet: bool) -> int:
    """Give every catalog item the current encoder's content vector (see
    :func:`.training.embed_catalog`), with a progress bar; returns how many were embedded."""
    from tqdm import tqdm

    from .catalog_store import PostgresCatalog
    from .embedding.convert import EmbeddingModelMissing
    from .embedding.encoder import Encoder
    from .training import embed_catalog

    catalog = PostgresCatalog(store.engine)
    size = catalog.size()
    if not size:
        return 0
    try:
        encoder = Encoder(settings.content_model_dir())
    except EmbeddingModelMissing:
        raise EmbeddingModelMissing(
            f"the catalog ({size:,} items) needs the content encoder before training, and "
            f"there is none in {settings.content_model_dir()}: run `marquee encoder build`"
        ) from None
    started = time.monotonic()
    with tqdm(unit="item", desc="embedding the catalog", disable=quiet, leave=False) as bar:

        def progress(done: int, total: int) -> None:
            bar.total = total
            bar.update(done - bar.n)

        embedded = embed_catalog(catalog, encoder.encode, encoder.name, progress=progress)
    if not quiet:
        print(
            f"catalog: {embedded:,} of {size:,} items embedded with {encoder.name} "
            f"({time.monotonic() - started:.1f} s); the others were current"
        )
    return embedded


def run_recommend(args, _: Settings) -> int:
    from shared.errors import ConfigurationError

    from .catalog_store import PostgresCatalog
    from .serving import described, load_active, recommend_for
    from .store import InteractionStore

    settings, store = _store(args)
    try:
        interactions = InteractionStore(store.engine)
        # With the catalog, as a worker loads it: names, new items mapped from content, recency.
        loaded = load_active(
            interactions,
            store,
            settings.half_life_seconds(),
            PostgresCatalog(store.engine),
            settings.max_age_seconds(),
            settings.shaping(),
        )
        if loaded is None:
            raise ConfigurationError("no active model yet: run `marquee train`")
        items, strategy = recommend_for(
            loaded, interactions, args.user, args.k, exclude_seen=not args.include_seen
        )
    finally:
        store.engine.dispose()
    shown = described(loaded.recommender, items)
    if args.json:
        print(
            json.dumps(
                {
                    "user_id": args.user,
                    "strategy": strategy,
                    "model_version": loaded.version.id,
                    "items": shown,
                },
                indent=2,
            )
        )
        return 0
    print(f"user {args.user}: {strategy} (model version {loaded.version.id})")
    for rank, item in enumerate(shown, 1):
        kind = f"[{item['kind']}]" if item["kind"] else ""
        name = " ".join(part for part in (kind, item["title"]) if part)
        print(f"{rank:>3}. {item['item_id']:<24} {item['score']:.4f}  {name}".rstrip())
    return 0


def run_models(args, _: Settings) -> int:
    _, store = _store(args)
    try:
        versions = store.versions()
    finally:
        store.engine.dispose()
    if args.json:
        print(json.dumps([v.__dict__ for v in versions], indent=2, default=str))
        return 0
    if not versions:
        print("no model versions yet: run `marquee train`")
        return 0
    print(
        f"{'id':>4} {'status':<9} {'trained at (UTC)':<19} {'users':>6} {'items':>6} "
        f"{'P@10':>7} {'vs pop':>7}"
    )
    for v in versions:
        holdout = v.metrics.get("holdout", {})
        p = holdout.get("served", {}).get("precision@10")
        base = holdout.get("popularity", {}).get("precision@10")
        ratio = f"{p / base:.2f}x" if p is not None and base else "-"
        shown = f"{p:.4f}" if p is not None else "-"
        # Seconds in UTC: the stored ISO text (microseconds, offset) is wider than a column.
        trained = datetime.fromisoformat(v.trained_at).astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")
        print(
            f"{v.id:>4} {v.status:<9} {trained:<19} {v.n_users or 0:>6} {v.n_items or 0:>6} "
            f"{shown:>7} {ratio:>7}"
        )
    return 0
