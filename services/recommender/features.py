"""The re-ranker's features of one (user, candidate item) pair (pure logic: no Kafka, no database).

What the re-ranker knows about a candidate: where ALS put it (score and rank), how popular
the item is overall and lately, how old it is and of which kind, how well its tags (genres,
for films) match what the user read, how active the user is and, where known, who the user
is (MovieLens-100k's age, gender and occupation), and how close the item is to what the
user read last (cosine of ALS item factors: the strongest signal offline, since what a
user reads next follows what they just read). :class:`FeatureSource` holds the
per-item and per-user facts, built once from the interactions a model was trained on;
:meth:`FeatureSource.features` turns one candidate into the dict river's pipeline reads.
"""

from __future__ import annotations

import bisect
import math
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import numpy as np

from .interactions import Event

DAY_SECONDS = 86_400.0
YEAR_SECONDS = 365.25 * DAY_SECONDS
#: Recent popularity: the item's interactions in this window before the user's "now".
RECENT_WINDOW_SECONDS = 7 * DAY_SECONDS
#: How many of a user's latest items the similarity features compare a candidate with.
LAST_ITEMS = 10

#: The numeric features, in the order docs/reranker.md lists them.
NUMERIC = (
    "als_score",
    "als_relative",
    "als_rank",
    "popularity",
    "recent_popularity",
    "item_age_years",
    "tag_match",
    "tag_share",
    "last_similarity_max",
    "last_similarity_mean",
    "user_activity",
    "user_age",
    "user_age_known",
)
#: The categorical features (one-hot encoded by the model).
CATEGORICAL = ("kind", "gender", "occupation")
#: The value of a categorical feature nobody told us.
UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True)
class ItemFacts:
    kind: str = "item"
    tags: tuple[str, ...] = ()
    #: Epoch seconds; ``None``: unknown (the age feature is then 0).
    published_at: float | None = None


@dataclass(frozen=True, slots=True)
class UserFacts:
    age: int | None = None
    gender: str | None = None
    occupation: str | None = None


@dataclass
class FeatureSource:
    """Per-item popularity and per-user history, counted from ``(user, item, weight, time)``
    events up to ``now``, plus what the catalog and the user table say."""

    now: float
    items: Mapping[str, ItemFacts] = field(default_factory=dict)
    users: Mapping[str, UserFacts] = field(default_factory=dict)
    popularity: Counter = field(default_factory=Counter)
    #: Per item: its interactions' times, sorted (recent popularity is counted from them).
    times: dict[str, list[float]] = field(default_factory=dict)
    #: Per user: their latest event, the "now" of their features unless a caller says.
    last_seen: dict[str, float] = field(default_factory=dict)
    activity: Counter = field(default_factory=Counter)
    #: Per user: how many of the items they read carry each tag.
    tag_counts: dict[str, Counter] = field(default_factory=dict)
    #: Per user: their :data:`LAST_ITEMS` latest distinct items, oldest first.
    last_items: dict[str, list[str]] = field(default_factory=dict)
    #: Per item: its ALS factors scaled to unit length (items without any are left out).
    vectors: dict[str, np.ndarray] = field(default_factory=dict)

    @classmethod
    def from_events(
        cls,
        events: Iterable[Event],
        *,
        now: float,
        items: Mapping[str, ItemFacts] | None = None,
        users: Mapping[str, UserFacts] | None = None,
        item_vectors: Mapping[str, np.ndarray] | None = None,
    ) -> FeatureSource:
        """``item_vectors``: each item's ALS factors (the similarity features are 0 without)."""
        source = cls(now=now, items=dict(items or {}), users=dict(users or {}))
        for item, vector in (item_vectors or {}).items():
            norm = float(np.linalg.norm(vector))
            if norm > 0:
                source.vectors[item] = np.asarray(vector, dtype=np.float64) / norm
        seen: set[tuple[str, str]] = set()
        for user, item, _weight, at in sorted(events, key=lambda e: e[3]):
            if at > now:
                continue  # the future is not a feature
            source.popularity[item] += 1
            source.times.setdefault(item, []).append(at)
            source.last_seen[user] = max(source.last_seen.get(user, at), at)
            if (user, item) not in seen:  # a re-read says nothing new about taste
                seen.add((user, item))
                source.activity[user] += 1
                tags = source.tag_counts.setdefault(user, Counter())
                tags.update(source.item(item).tags)
            last = source.last_items.setdefault(user, [])
            if item in last:
                last.remove(item)
            last.append(item)
            del last[:-LAST_ITEMS]
        for times in source.times.values():
            times.sort()
        return source

    def recent_popularity(self, item_id: str, at: float) -> int:
        """The item's interactions in the :data:`RECENT_WINDOW_SECONDS` up to ``at``."""
        times = self.times.get(item_id, ())
        return bisect.bisect_right(times, at) - bisect.bisect_left(
            times, at - RECENT_WINDOW_SECONDS
        )

    def item(self, item_id: str) -> ItemFacts:
        return self.items.get(item_id) or ItemFacts()

    def last_similarity(self, user_id: str, item_id: str) -> tuple[float, float]:
        """Max and mean cosine between the item and the user's latest items."""
        vector = self.vectors.get(item_id)
        last = [self.vectors[i] for i in self.last_items.get(user_id, ()) if i in self.vectors]
        if vector is None or not last:
            return 0.0, 0.0
        sims = np.stack(last) @ vector
        return float(sims.max()), float(sims.mean())

    def features(
        self,
        user_id: str,
        item_id: str,
        score: float,
        rank: int,
        *,
        top_score: float | None = None,
        at: float | None = None,
    ) -> dict:
        """One candidate's features; ``rank`` counts from 0 (ALS's best), ``top_score`` is
        the list's best score (default: this one), ``at`` the user's "now" (default: their
        latest event, else the source's ``now``): serving passes the request's time."""
        if at is None:
            at = self.last_seen.get(user_id, self.now)
        item = self.item(item_id)
        user = self.users.get(user_id) or UserFacts()
        activity = self.activity.get(user_id, 0)
        tags = self.tag_counts.get(user_id) or Counter()
        matched = [tags[t] for t in item.tags]
        age = 0.0 if item.published_at is None else max(at - item.published_at, 0.0)
        top = score if top_score is None else top_score
        sim_max, sim_mean = self.last_similarity(user_id, item_id)
        out = {
            "als_score": float(score),
            # ALS scores' scale differs per user and per fitted model; the ratio does not.
            "als_relative": float(score / top) if top > 0 else 0.0,
            # 1 / (1 + rank): the gap between 1st and 2nd matters, 40th and 41st hardly.
            "als_rank": 1.0 / (1.0 + rank),
            "popularity": math.log1p(self.popularity.get(item_id, 0)),
            "recent_popularity": math.log1p(self.recent_popularity(item_id, at)),
            "item_age_years": math.log1p(age / YEAR_SECONDS),
            # The share of the user's reads with the item's best-matching tag, and how many
            # of the item's tags the user has read at all.
            "tag_match": max(matched, default=0) / activity if activity else 0.0,
            "tag_share": sum(1 for m in matched if m) / len(matched) if matched else 0.0,
            "last_similarity_max": sim_max,
            "last_similarity_mean": sim_mean,
            "user_activity": math.log1p(activity),
            "user_age": (user.age or 0) / 100.0,
            "user_age_known": 1.0 if user.age is not None else 0.0,
            "kind": item.kind,
            # river's Select needs every key; "unknown" is a category of its own.
            "gender": user.gender or UNKNOWN,
            "occupation": user.occupation or UNKNOWN,
        }
        return out
