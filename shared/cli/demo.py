"""``marquee demo``: the main job on embedded defaults (what ``make demo`` runs).

Today: the stack is up (``make up``), the topics exist, the real MovieLens-100k ratings
are replayed as interaction events and a summary is printed. Services join the demo as
they land (recommender, generator, dashboard).
"""

from __future__ import annotations

import time
from collections import Counter

from ..config import Settings
from ..data import movielens
from ..db import current_revision, make_engine
from ..kafka.admin import ensure_from_settings
from ..kafka.offsets import end_offsets
from ..topics import full_name
from .argtypes import positive_int, rate
from .replay import replay
from .topics import admin_client


def register(commands) -> None:
    parser = commands.add_parser(
        "demo", help="replay MovieLens-100k through the stack and summarise"
    )
    parser.add_argument(
        "--limit", type=positive_int, help="replay only the first N ratings (default: all)"
    )
    parser.add_argument("--rate", type=rate, default=0.0, help="events per second (default: max)")
    parser.set_defaults(handler=run)


def _step(text: str) -> None:
    print(f"==> {text}", flush=True)


def run(args, settings: Settings) -> int:
    started = time.monotonic()
    _step(f"Kafka at {settings.kafka_bootstrap_servers}: ensuring topics")
    admin = admin_client(settings)
    try:
        report = ensure_from_settings(admin, settings)
        print(
            f"    {len(report.created)} created, {len(report.unchanged) + len(report.reconciled)} already there"
        )

        _step("Postgres: checking the schema")
        engine = make_engine(settings)
        try:
            revision = current_revision(engine, settings.postgres_schema)
        finally:
            engine.dispose()
        print(f"    schema {settings.postgres_schema} at migration {revision}")

        ratings = movielens.load_ratings()
        if args.limit:
            ratings = ratings[: args.limit]
        _step(f"replaying {len(ratings):,} MovieLens-100k ratings as interaction events")
        sent, confirmed = replay(settings, rate=args.rate, limit=args.limit)

        _step("summary")
        actions = Counter("like" if r.rating >= 4 else "view" for r in ratings)
        print(f"    events confirmed by the broker: {confirmed:,} of {sent:,}")
        print(
            f"    users: {len({r.user_id for r in ratings}):,}   items: {len({r.item_id for r in ratings}):,}"
        )
        print(f"    actions: {', '.join(f'{k} {v:,}' for k, v in sorted(actions.items()))}")
        total = sum(end_offsets(settings, "interactions").values())
        print(
            f"    records on {full_name('interactions', settings.topic_prefix)}: {total:,} (all replays so far)"
        )
    finally:
        admin.close()
    print(f"    took {time.monotonic() - started:.1f} s")
    print(
        "next: `.venv/bin/marquee tail interactions` to watch events, `make test` to run the suite"
    )
    return 0 if confirmed == sent else 1
