"""``marquee replay movielens``: MovieLens-100k's films as catalog items, then its real
ratings as interaction events."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime

from tqdm import tqdm

from ..config import Settings
from ..data import movielens
from ..kafka.publisher import Publisher
from .argtypes import positive_int, rate


def register(commands) -> None:
    parser = commands.add_parser("replay", help="replay a data set as interaction events")
    sub = parser.add_subparsers(dest="dataset", required=True, parser_class=type(parser))
    ml = sub.add_parser(
        "movielens",
        help="MovieLens-100k's catalog, then its ratings in timestamp order",
        description="Publishes the whole catalog first (1,682 films on `catalog`, whatever "
        "--limit says, at full speed), then the ratings on `interactions`.",
    )
    ml.add_argument(
        "--rate", type=rate, default=0.0, help="ratings per second (default: max; not the catalog)"
    )
    ml.add_argument(
        "--limit",
        type=positive_int,
        help="replay only the first N ratings (the catalog is always published whole)",
    )
    ml.add_argument("--quiet", action="store_true", help="no progress bar")
    ml.set_defaults(handler=run)


class Pacer:
    """Keeps a steady rate without drifting: sleeps until event n's due time."""

    def __init__(self, rate: float, clock=time.monotonic, sleep=time.sleep) -> None:
        self.interval = 1.0 / rate if rate > 0 else 0.0
        self._clock, self._sleep = clock, sleep
        self.start = clock()

    def wait(self, n: int) -> None:
        if self.interval:
            delay = self.start + n * self.interval - self._clock()
            if delay > 0:
                self._sleep(delay)


def replay(
    settings: Settings,
    *,
    rate: float = 0.0,
    limit: int | None = None,
    progress=True,
    live: bool = False,
    stop: threading.Event | None = None,
    on_catalog: Callable[[int, int], None] | None = None,
) -> tuple[int, int]:
    """Publish the catalog, then the ratings; returns the ratings' ``(sent, confirmed)``
    after the final flush.

    The whole catalog is confirmed before the first rating is sent (the films exist before
    anyone rates them), then ``on_catalog(published, confirmed)`` is called. ``live``
    stamps each rating with the time it is sent instead of the rating's own; setting
    ``stop`` ends the replay early."""
    ratings = movielens.load_ratings()
    if limit is not None:
        ratings = ratings[:limit]
    films = movielens.load_films()
    pacer = Pacer(rate)
    with Publisher(settings) as publisher:
        for film in films:
            publisher.publish(movielens.to_item_event(film))
        publisher.flush()
        in_catalog = publisher.confirmed
        if on_catalog is not None:
            on_catalog(len(films), in_catalog)
        bar = tqdm(total=len(ratings), unit="ev", disable=not progress, desc="replaying")
        sent = 0
        for n, rating in enumerate(ratings):
            if stop is not None and stop.is_set():
                break
            pacer.wait(n)
            publisher.publish(movielens.to_event(rating, datetime.now(UTC) if live else None))
            sent += 1
            if n % 500 == 0:
                confirmed = publisher.confirmed - in_catalog
                bar.set_postfix_str(f"confirmed={confirmed:,}", refresh=False)
            bar.update()
        bar.set_postfix_str("flushing")
        publisher.flush()
        confirmed = publisher.confirmed - in_catalog
        bar.set_postfix_str(f"confirmed={confirmed:,}")
        bar.close()
        return sent, confirmed


def run(args, settings: Settings) -> int:
    started = time.monotonic()

    def catalog_done(published: int, confirmed: int) -> None:
        print(
            f"published MovieLens-100k's catalog: {published} films; {confirmed} confirmed by "
            f"the broker in {time.monotonic() - started:.1f} s",
            flush=True,
        )

    sent, confirmed = replay(
        settings,
        rate=args.rate,
        limit=args.limit,
        progress=not args.quiet,
        on_catalog=catalog_done,
    )
    elapsed = time.monotonic() - started
    print(
        f"replayed {sent} MovieLens-100k ratings; {confirmed} confirmed by the broker "
        f"in {elapsed:.1f} s ({confirmed / elapsed:,.0f} events/s)"
    )
    return 0 if confirmed == sent else 1
