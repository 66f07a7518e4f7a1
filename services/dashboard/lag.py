"""Consumer lag: Burrow-style status over a sliding window, and lag in seconds (pure logic).

No Kafka here: the collector samples offsets and hands this module plain numbers, so every
rule is testable on a crafted history in microseconds.

**Observations.** Every sample of a group's committed offset for one partition, with the
partition's end offset taken in the same sample, is one :class:`Observation`. Lag is
``end - committed``, clamped at 0: end and committed offsets come from two requests, so a
consumer that is right at the end can look a few messages *past* it.

**Status** (LinkedIn Burrow's evaluation rules, adapted to sampling), over the newest
``size`` observations of a partition, first match wins:

* ``UNKNOWN`` - the group has no committed offset for the partition.
* ``REWIND`` - the committed offset went backwards inside the window (an offset reset or a
  replay). Burrow only looks for it when lag never reached 0; a rewind is news to an
  operator either way, so here it comes first.
* ``OK`` - lag was 0 at least once in the window (the consumer caught up).
* ``OK`` (incomplete) - fewer than ``size`` observations so far: too early to judge a trend.
* ``STOP`` - the committed offset did not move over the whole window, lag is above 0, and no
  live member of the group owns the partition. Burrow infers "stopped" from commits going
  silent; a sampler cannot tell a consumer that re-commits the same offset from one that
  commits nothing, so the group coordinator's member list decides instead.
* ``STALL`` - the committed offset did not move over the window and lag is above 0, while a
  live member owns the partition: it is assigned but makes no progress.
* ``WARN`` - the consumer moves, but lag never decreased from one observation to the next
  over the window: it is falling behind.
* ``OK`` - anything else (lag goes down at times: it keeps up or catches up).

**Lag in seconds** (:func:`lag_seconds`): how long ago the oldest unconsumed message (the
one at the committed offset) was appended. The collector keeps a history of the partition's
end offsets with the time each was seen; the message's append time is interpolated between
the two samples whose end offsets enclose it. When it is older than that history, its time
is extrapolated at the history's average append rate; when nothing was appended during the
whole history either, the answer is the history's age, flagged as a lower bound.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from itertools import islice


class Status(StrEnum):
    OK = "OK"
    WARN = "WARN"
    STALL = "STALL"
    STOP = "STOP"
    REWIND = "REWIND"
    UNKNOWN = "UNKNOWN"


@dataclass(frozen=True, slots=True)
class Observation:
    """One sample: when it was taken (seconds), the committed offset (None: none yet), the end."""

    at: float
    committed: int | None
    end: int

    @property
    def lag(self) -> int | None:
        return None if self.committed is None else max(0, self.end - self.committed)


@dataclass(frozen=True, slots=True)
class Evaluation:
    status: Status
    #: Lag in messages at the newest observation (None: no committed offset).
    lag: int | None
    #: Whether the window held ``size`` observations (trend rules need a full one).
    complete: bool
    #: One line an operator can act on.
    reason: str


def evaluate(window: Sequence[Observation], *, size: int, owned: bool) -> Evaluation:
    """The status of one partition for one group from its newest ``size`` observations.

    ``owned``: a live member of the group is assigned this partition right now.
    """
    if size < 2:
        raise ValueError("a window needs at least 2 observations to show a trend")
    if not window or window[-1].committed is None:
        return Evaluation(Status.UNKNOWN, None, False, "no committed offset")
    # Observations from before the first commit say nothing about the consumer's pace.
    # (``window`` may be a deque: no slicing.)
    newest = islice(window, max(0, len(window) - size), None)
    seen = [o for o in newest if o.committed is not None]
    lags = [o.lag for o in seen]
    offsets = [o.committed for o in seen]
    lag, complete = lags[-1], len(seen) >= size

    for before, after in zip(offsets, offsets[1:], strict=False):
        if after < before:
            return Evaluation(
                Status.REWIND, lag, complete, f"committed offset went back from {before} to {after}"
            )
    if 0 in lags:
        return Evaluation(Status.OK, lag, complete, "caught up within the window")
    if not complete:
        return Evaluation(
            Status.OK, lag, False, f"window filling ({len(seen)} of {size} observations)"
        )
    if offsets[0] == offsets[-1]:
        if not owned:
            return Evaluation(
                Status.STOP, lag, True, "no progress and no live group member owns the partition"
            )
        return Evaluation(
            Status.STALL, lag, True, "assigned to a live member but the offset does not move"
        )
    if all(b >= a for a, b in zip(lags, lags[1:], strict=False)):
        return Evaluation(Status.WARN, lag, True, "consuming, but lag grew over the whole window")
    return Evaluation(Status.OK, lag, True, "consuming and keeping up")


@dataclass(frozen=True, slots=True)
class LagTime:
    seconds: float
    #: True when the history cannot date the message: it is at least this old.
    lower_bound: bool = False


def lag_seconds(
    committed: int | None, ends: Sequence[tuple[float, int]], now: float
) -> LagTime | None:
    """How long ago the message at ``committed`` was appended, from ``(time, end offset)``
    samples of its partition (oldest first; the newest is the current end). None without a
    committed offset or history."""
    if committed is None or not ends:
        return None
    ends = list(ends)
    if committed >= ends[-1][1]:
        return LagTime(0.0)
    # Only the history since the end offsets last went down (a recreated topic) dates anything.
    for i in range(len(ends) - 1, 0, -1):
        if ends[i][1] < ends[i - 1][1]:
            ends = ends[i:]
            break
    first_at, first_end = ends[0]
    if committed < first_end:
        # Appended before the history starts: extrapolate at the history's average rate.
        last_at, last_end = ends[-1]
        if last_at > first_at and last_end > first_end:
            rate = (last_end - first_end) / (last_at - first_at)
            return LagTime(max(0.0, now - (first_at - (first_end - committed) / rate)))
        return LagTime(max(0.0, now - first_at), lower_bound=True)
    for (t0, e0), (t1, e1) in zip(ends, ends[1:], strict=False):
        if e0 <= committed < e1:
            # Messages e0..e1-1 arrived between t0 and t1: assume evenly spread.
            appended = t0 + (committed + 1 - e0) / (e1 - e0) * (t1 - t0)
            return LagTime(max(0.0, now - appended))
    raise AssertionError("unreachable: the end offsets are non-decreasing here")
