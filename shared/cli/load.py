"""``marquee load interactions``: a seeded synthetic news-site stream onto ``interactions``,
paced, confirmed, with progress (the generation is shared/data/synthetic.py)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np
from tqdm import tqdm

from ..config import Settings
from ..data.synthetic import InteractionStream, StreamSpec
from ..errors import ConfigurationError
from ..events import EventCodec, InteractionEvent
from ..kafka.publisher import Publisher
from ..kafka.records import Record, headers_for
from ..topics import full_name
from .argtypes import aware_datetime, positive_int, rate
from .replay import Pacer

TOPIC = "interactions"


def register(commands) -> None:
    parser = commands.add_parser("load", help="publish a synthetic load")
    sub = parser.add_subparsers(dest="load_kind", required=True, parser_class=type(parser))
    inter = sub.add_parser(
        "interactions",
        help="a news site's interactions: Zipf items, heavy-tailed readers, daily cycles",
        description="Publishes EVENTS synthetic marquee.interaction.v1 events on `interactions`, "
        "in time order over --days: the same options (seed included) give the same events, "
        "ids included. See docs/benchmarks.md.",
    )
    inter.add_argument("--users", type=positive_int, required=True, help="readers")
    inter.add_argument("--items", type=positive_int, required=True, help="articles")
    inter.add_argument("--events", type=positive_int, required=True, help="interactions")
    inter.add_argument(
        "--rate", type=rate, default=0.0, help="events per second (default: 0, as fast as possible)"
    )
    inter.add_argument("--seed", type=int, default=0, help="default: %(default)s")
    inter.add_argument(
        "--days", type=float, default=30.0, help="span of the event times (default: %(default)s)"
    )
    inter.add_argument(
        "--start",
        type=aware_datetime,
        help="time of the first minute (default: --days before today's UTC midnight; pass it "
        "to repeat a stream exactly on another day)",
    )
    inter.add_argument(
        "--item-exponent", type=float, default=1.05, help="Zipf exponent (default: %(default)s)"
    )
    inter.add_argument(
        "--user-sigma",
        type=float,
        default=1.6,
        help="sigma of the lognormal activity per reader (default: %(default)s)",
    )
    inter.add_argument(
        "--sections",
        type=positive_int,
        default=20,
        help="sections of the site, each reader's favourite one (default: %(default)s)",
    )
    inter.add_argument(
        "--section-affinity",
        type=float,
        default=0.5,
        help="share of reads in the reader's section (default: %(default)s)",
    )
    inter.add_argument("--quiet", action="store_true", help="no progress bar")
    inter.set_defaults(handler=run)


@dataclass(frozen=True)
class LoadResult:
    sent: int
    confirmed: int
    users: int  # readers with at least one event
    items: int  # items with at least one event
    seconds: float


def load(
    settings: Settings, spec: StreamSpec, *, rate: float = 0.0, progress: bool = True
) -> LoadResult:
    """Publish ``spec``'s stream at ``rate`` events/s (0: unpaced) and wait until the broker
    confirmed every event (a failure raises :class:`DeliveryError`)."""
    codec = EventCodec(
        max_bytes=settings.max_event_bytes,
        max_clock_skew_seconds=settings.max_clock_skew_seconds,
    )
    stream = InteractionStream(spec)
    topic = full_name(TOPIC, settings.topic_prefix)
    headers = headers_for(InteractionEvent.event_type)
    users = np.zeros(spec.users, dtype=bool)
    items = np.zeros(spec.items, dtype=bool)
    pacer = Pacer(rate)
    started = time.monotonic()
    sent = 0
    with Publisher(settings) as publisher:
        bar = tqdm(total=spec.events, unit="ev", disable=not progress, desc="publishing")
        for chunk in stream.chunks():
            keys, values = stream.encode(chunk)
            # The generator writes JSON by hand for speed: the codec checks it keeps to
            # the contract (one event a chunk; the unit tests check them all).
            codec.decode(values[0], topic=TOPIC)
            users[chunk.user] = True
            items[chunk.item] = True
            for key, value in zip(keys, values, strict=True):
                pacer.wait(sent)
                publisher.publish_record(Record(topic, key, value, headers))
                sent += 1
                if sent % 1_000 == 0:
                    bar.update(1_000)
                    bar.set_postfix_str(f"confirmed={publisher.confirmed:,}", refresh=False)
        bar.update(sent - bar.n)
        bar.set_postfix_str("flushing")
        publisher.flush()
        bar.set_postfix_str(f"confirmed={publisher.confirmed:,}")
        bar.close()
        confirmed = publisher.confirmed
    return LoadResult(
        sent, confirmed, int(users.sum()), int(items.sum()), time.monotonic() - started
    )


def spec_from(args, now: datetime | None = None) -> StreamSpec:
    """The stream the options describe; refuses one whose events would lie in the future."""
    now = now or datetime.now(UTC)
    midnight = now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    start = args.start or midnight - timedelta(days=args.days)
    try:
        spec = StreamSpec(
            users=args.users,
            items=args.items,
            events=args.events,
            seed=args.seed,
            days=args.days,
            start=start,
            item_exponent=args.item_exponent,
            user_sigma=args.user_sigma,
            sections=args.sections,
            section_affinity=args.section_affinity,
        )
    except ValueError as exc:
        raise ConfigurationError(f"marquee load interactions: {exc}") from None
    if spec.end > now:
        raise ConfigurationError(
            f"the events would run until {spec.end:%Y-%m-%dT%H:%MZ}, in the future (consumers "
            "refuse those): pass an earlier --start or fewer --days"
        )
    return spec


def run(args, settings: Settings) -> int:
    spec = spec_from(args)
    result = load(settings, spec, rate=args.rate, progress=not args.quiet)
    print(
        f"published {result.sent:,} interactions ({result.users:,} of {spec.users:,} users, "
        f"{result.items:,} of {spec.items:,} items, seed {spec.seed}, {spec.days:g} days from "
        f"{spec.start_minute:%Y-%m-%dT%H:%MZ}); {result.confirmed:,} confirmed by the broker "
        f"in {result.seconds:.1f} s ({result.confirmed / max(result.seconds, 1e-9):,.0f} "
        "events/s)"
    )
    return 0 if result.confirmed == result.sent else 1
