"""``marquee replay movielens``: real MovieLens-100k ratings as interaction events."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime

from tqdm import tqdm

from ..config import Settings
from ..data import movielens
from ..kafka.publisher import Publisher
from .argtypes import positive_int, rate


def register(commands) -> None:
    parser = commands.add_parser("replay", help="replay a data set as interaction events")
    sub = parser.add_subparsers(dest="dataset", required=True, parser_class=type(parser))
    ml = sub.add_parser("movielens", help="MovieLens-100k ratings in timestamp order")
    ml.add_argument("--rate", type=rate, default=0.0, help="events per second (default: max)")
    ml.add_argument("--limit", type=positive_int, help="replay only the first N ratings")
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
) -> tuple[int, int]:
    """Publish the ratings; returns ``(sent, confirmed)`` after the final flush.

    ``live`` stamps each event with the time it is sent instead of the rating's own;
    setting ``stop`` ends the replay early."""
    ratings = movielens.load_ratings()
    if limit is not None:
        ratings = ratings[:limit]
    pacer = Pacer(rate)
    with Publisher(settings) as publisher:
        bar = tqdm(total=len(ratings), unit="ev", disable=not progress, desc="replaying")
        sent = 0
        for n, rating in enumerate(ratings):
            if stop is not None and stop.is_set():
                break
            pacer.wait(n)
            publisher.publish(movielens.to_event(rating, datetime.now(UTC) if live else None))
            sent += 1
            if n % 500 == 0:
                bar.set_postfix_str(f"confirmed={publisher.confirmed:,}", refresh=False)
            bar.update()
        bar.set_postfix_str("flushing")
        publisher.flush()
        bar.set_postfix_str(f"confirmed={publisher.confirmed:,}")
        bar.close()
        return sent, publisher.confirmed


def run(args, settings: Settings) -> int:
    started = time.monotonic()
    sent, confirmed = replay(settings, rate=args.rate, limit=args.limit, progress=not args.quiet)
    elapsed = time.monotonic() - started
    print(
        f"replayed {sent} MovieLens-100k ratings; {confirmed} confirmed by the broker "
        f"in {elapsed:.1f} s ({confirmed / elapsed:,.0f} events/s)"
    )
    return 0 if confirmed == sent else 1
