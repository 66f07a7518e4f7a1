"""A synthetic news-site interaction stream, generated and encoded in numpy chunks.

What makes it look like a newsroom's traffic (each a parameter of :class:`StreamSpec`):

* item popularity is Zipf (rank ``r`` drawn with probability ∝ ``r ** -item_exponent``),
  ranks shuffled over the item ids;
* user activity is heavy-tailed: each user's rate is lognormal (``user_sigma``), so a few
  readers make a large share of the events;
* readers lean to one section of the site (``sections``, ``section_affinity``): a share of
  their reads follows the Zipf ranking of their own section, which gives a recommender
  something to learn while keeping the overall Zipf slope;
* time follows a diurnal curve (night trough, morning and evening peaks; peak ≈ 4× the
  trough over hourly totals) and lighter weekends, over ``days`` from ``start``;
* the action mix of a news site: mostly views, then clicks and dwell reports (with their
  seconds, lognormal around 45 s), few likes and fewer shares.

Events are in time order, ids are distinct, and the stream depends only on the spec: the
same spec (seed included) gives byte-identical bytes, however the chunks are consumed.
Memory is bounded by the chunk size plus O(users + items + minutes) for the samplers;
no event ever exists as a Python dict. No Kafka here: the CLI publishes what this makes.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta

import numpy as np

from ..events.models import InteractionAction, InteractionEvent

SOURCE = "urn:marquee:load"
#: Events per generated chunk, and the unit of randomness: chunk ``b`` draws from its own
#: seeded generator, so a consumer may stop, skip or resume without changing the bytes.
CHUNK_EVENTS = 65_536
#: Part of every event id: bump it when a change here changes the bytes of a spec's stream.
STREAM_VERSION = 1

#: A news site's traffic by hour of the day (relative; linearly interpolated per minute).
HOURLY_PROFILE = (
    1.5, 1.1, 0.95, 0.9, 1.0, 1.3, 2.1, 3.2, 3.8, 3.7, 3.5, 3.4,
    3.6, 3.4, 3.2, 3.1, 3.1, 3.2, 3.3, 3.5, 3.7, 3.4, 2.8, 2.1,
)  # fmt: skip
#: Saturday and Sunday against a weekday.
WEEKEND_FACTOR = 0.8
#: Actions of the contract and their share of the events.
ACTION_MIX = {"view": 0.62, "click": 0.18, "dwell": 0.15, "like": 0.03, "share": 0.02}
ACTIONS = frozenset(InteractionAction.__args__)  # type: ignore[attr-defined]
#: Dwell seconds: lognormal around this median, with this sigma, clipped to the bounds.
DWELL_MEDIAN_SECONDS = 45.0
DWELL_SIGMA = 0.9
DWELL_BOUNDS = (1.0, 3_600.0)


def _default_start() -> datetime:
    return datetime(2025, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class StreamSpec:
    """Everything that decides the stream; equal specs give equal bytes."""

    users: int
    items: int
    events: int
    seed: int = 0
    days: float = 30.0
    #: The first minute of the span (seconds and below are dropped).
    start: datetime = field(default_factory=_default_start)
    item_exponent: float = 1.05
    user_sigma: float = 1.6
    sections: int = 20
    section_affinity: float = 0.5
    action_mix: tuple[tuple[str, float], ...] = tuple(ACTION_MIX.items())

    def __post_init__(self) -> None:
        # One spelling per value: days=2 and days=2.0 are one stream, with one id tag.
        for name in ("days", "item_exponent", "user_sigma", "section_affinity"):
            object.__setattr__(self, name, float(getattr(self, name)))
        mix = tuple((str(a), float(share)) for a, share in self.action_mix)
        object.__setattr__(self, "action_mix", mix)
        for name in ("users", "items"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1")
        if self.events < 0:
            raise ValueError("events must be >= 0")
        if not self.days * 1440 >= 1:
            raise ValueError("days must cover at least one minute")
        if self.start.tzinfo is None:
            raise ValueError("start needs a timezone")
        if not 0 <= self.section_affinity <= 1 or self.sections < 1:
            raise ValueError("sections must be >= 1 and section_affinity within [0, 1]")
        unknown = {a for a, _ in self.action_mix} - ACTIONS
        if unknown or any(share < 0 for _, share in self.action_mix):
            raise ValueError(f"action_mix: unknown actions {sorted(unknown)} or a negative share")

    @property
    def start_minute(self) -> datetime:
        return self.start.astimezone(UTC).replace(second=0, microsecond=0)

    @property
    def end(self) -> datetime:
        return self.start_minute + timedelta(minutes=int(self.days * 1440))

    @property
    def tag(self) -> str:
        """Prefix of the event ids: a digest of the spec, so different streams never share
        an id (and an idempotent ingest stores two different runs in full)."""
        canonical = repr((STREAM_VERSION, replace(self, start=self.start_minute)))
        return "ld-" + hashlib.blake2b(canonical.encode(), digest_size=5).hexdigest()


@dataclass(frozen=True, slots=True)
class Chunk:
    """Consecutive events as columns: event ``n`` of the stream is row ``n - first``."""

    first: int
    user: np.ndarray  # int64 user number
    item: np.ndarray  # int64 item number
    action: np.ndarray  # int8 index into StreamSpec.action_mix
    time_ms: np.ndarray  # int64 Unix milliseconds, non-decreasing
    dwell_ds: np.ndarray  # int64 dwell in deciseconds (meaningful for dwell rows)

    def __len__(self) -> int:
        return len(self.user)


def _zipf_cdf(n: int, exponent: float) -> np.ndarray:
    weights = np.arange(1, n + 1, dtype=np.float64) ** -exponent
    cdf = np.cumsum(weights)
    return cdf / cdf[-1]


def _draw(cdf: np.ndarray, rng: np.random.Generator, n: int) -> np.ndarray:
    # searchsorted can return len(cdf) when rounding leaves cdf[-1] a hair under 1.
    return np.minimum(np.searchsorted(cdf, rng.random(n), side="right"), len(cdf) - 1)


class InteractionStream:
    """The samplers of one spec, built once (O(users + items + minutes) memory)."""

    def __init__(self, spec: StreamSpec) -> None:
        self.spec = spec
        rng = np.random.default_rng([spec.seed, 0])
        activity = rng.lognormal(0.0, spec.user_sigma, spec.users)
        self._user_cdf = np.cumsum(activity) / activity.sum()
        self._user_section = rng.integers(0, spec.sections, spec.users)
        self._item_cdf = _zipf_cdf(spec.items, spec.item_exponent)
        per_section = spec.items // spec.sections
        self._section_cdf = _zipf_cdf(per_section, spec.item_exponent) if per_section else None
        #: Popularity rank -> item number: the most read item is not item 0.
        self._item_of_rank = rng.permutation(spec.items)
        self._action_cdf = np.cumsum([share for _, share in spec.action_mix])
        self._action_cdf /= self._action_cdf[-1]
        names = [a for a, _ in spec.action_mix]
        self._dwell = names.index("dwell") if "dwell" in names else -1
        # Events per minute: a multinomial over the minutes by the diurnal and weekly curve,
        # fixed up front so that chunks know their times without seeing one another.
        minutes = int(spec.days * 1440)
        self._start_ms = int(spec.start_minute.timestamp() * 1000)
        self._counts = rng.multinomial(spec.events, minute_weights(spec.start_minute, minutes))
        self._ends = np.cumsum(self._counts)

    def chunks(self) -> Iterator[Chunk]:
        for first in range(0, self.spec.events, CHUNK_EVENTS):
            yield self.chunk(first // CHUNK_EVENTS)

    def chunk(self, number: int) -> Chunk:
        spec = self.spec
        first = number * CHUNK_EVENTS
        n = max(0, min(CHUNK_EVENTS, spec.events - first))
        rng = np.random.default_rng([spec.seed, 1, number])
        index = np.arange(first, first + n, dtype=np.int64)
        # Event k of a minute holding c events sits at (k + u) / c of it: stratified, so the
        # stream stays in time order across chunk boundaries.
        minute = np.searchsorted(self._ends, index, side="right")
        count = self._counts[minute]
        rank = index - (self._ends[minute] - count)
        offset = ((rank + rng.random(n)) / count * 60_000).astype(np.int64)
        time_ms = self._start_ms + minute * 60_000 + offset

        user = _draw(self._user_cdf, rng, n)
        item_rank = _draw(self._item_cdf, rng, n)
        if self._section_cdf is not None and spec.section_affinity > 0:
            own = rng.random(n) < spec.section_affinity
            in_section = _draw(self._section_cdf, rng, n)
            item_rank = np.where(
                own, in_section * spec.sections + self._user_section[user], item_rank
            )
        item = self._item_of_rank[item_rank]
        action = _draw(self._action_cdf, rng, n).astype(np.int8)
        dwell = rng.lognormal(np.log(DWELL_MEDIAN_SECONDS), DWELL_SIGMA, n)
        dwell_ds = np.rint(np.clip(dwell, *DWELL_BOUNDS) * 10).astype(np.int64)
        return Chunk(first, user, item, action, time_ms, dwell_ds)

    # -- encoding ------------------------------------------------------------------------
    def encode(self, chunk: Chunk) -> tuple[list[bytes], list[bytes]]:
        """The chunk's Kafka keys (user ids) and values (CloudEvents JSON, as the codec
        would accept them)."""
        n = len(chunk)
        if not n:
            return [], []
        # Times by minute: one RFC 3339 prefix per distinct minute, seconds by formatting.
        minute_ms = chunk.time_ms - chunk.time_ms % 60_000
        minutes, which = np.unique(minute_ms, return_inverse=True)
        prefixes = [
            s.encode() for s in np.datetime_as_string(minutes.astype("datetime64[ms]"), unit="m")
        ]
        within = chunk.time_ms - minute_ms
        head = (
            b'{"specversion":"1.0","id":"' + self.spec.tag.encode() + b'-%d","source":"'
            + SOURCE.encode() + b'","type":"' + InteractionEvent.event_type.encode()
            + b'","time":"%b:%02d.%03dZ","datacontenttype":"application/json",'
            b'"data":{"user_id":"u%d","item_id":"i%d","action":"'
        )  # fmt: skip
        # The action and what follows it: constant text, but for a dwell's seconds.
        tails = [name.encode() + b'"}}' for name, _ in self.spec.action_mix]
        ends = [tails[a] for a in chunk.action.tolist()]
        for k in np.flatnonzero(chunk.action == self._dwell).tolist():
            tenths = int(chunk.dwell_ds[k])
            ends[k] = b'dwell","dwell_seconds":%d.%d}}' % divmod(tenths, 10)
        seconds, millis = np.divmod(within, 1000)
        users = chunk.user.tolist()
        template = head + b"%b"
        values = [
            template % row
            for row in zip(
                range(chunk.first, chunk.first + n),
                [prefixes[m] for m in which.tolist()],
                seconds.tolist(),
                millis.tolist(),
                users,
                chunk.item.tolist(),
                ends,
                strict=True,
            )
        ]
        return [b"u%d" % u for u in users], values

    def encoded_chunks(self) -> Iterator[tuple[list[bytes], list[bytes]]]:
        for chunk in self.chunks():
            yield self.encode(chunk)


def encoded_chunks(spec: StreamSpec) -> Iterator[tuple[list[bytes], list[bytes]]]:
    """``(keys, values)`` lists of at most :data:`CHUNK_EVENTS` events each, in stream order:
    the records of the ``interactions`` topic, ready for any producer."""
    return InteractionStream(spec).encoded_chunks()


def user_id(number: int) -> str:
    return f"u{number}"


def item_id(number: int) -> str:
    """The id the stream gives item ``number`` (``0 <= number < items``), for a catalog."""
    return f"i{number}"


def minute_weights(start: datetime, minutes: int) -> np.ndarray:
    """Probability of each minute from ``start`` (a UTC minute) by the diurnal curve (hour
    of day in UTC: a newsroom's readers mostly share its time zone) and lighter weekends."""
    hourly = np.asarray(HOURLY_PROFILE, dtype=np.float64)
    # The profile's values sit at each hour's middle; interpolate around the clock.
    at = (np.arange(1440) + 0.5) / 60 - 0.5
    day_curve = np.interp(at, np.arange(24), hourly, period=24)
    absolute = int(start.timestamp()) // 60 + np.arange(minutes)
    weights = day_curve[absolute % 1440]
    weekday = (absolute // 1440 + 3) % 7  # 1970-01-01 was a Thursday; Monday is 0
    weights = np.where(weekday >= 5, weights * WEEKEND_FACTOR, weights)
    return weights / weights.sum()
