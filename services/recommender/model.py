"""ALS recommendations from implicit-feedback confidences (pure logic: no Kafka, no database).

Confidence scaling, checked in implicit 0.7.3's source (``implicit/cpu/als.py``): ``fit``,
``recalculate_user`` and ``partial_fit_users`` multiply the matrix by ``alpha`` themselves,
and the solvers use each stored value ``c`` directly as the confidence of a positive pair
(``b += c * y``, ``A += (c - 1) * y yᵀ``) with every unstored pair at confidence 1. So
``C_ui = alpha * r_ui`` (not ``1 + alpha * r_ui``), and callers pass the raw summed
interaction weights: scaling them here as well would apply ``alpha`` twice.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np
import scipy.sparse
from implicit.cpu.als import AlternatingLeastSquares
from threadpoolctl import ThreadpoolController

from shared.errors import MarqueeError

from .content import ItemInfo
from .interactions import Interactions
from .recency import Shaping, capped, capped_top_k, freshened

DAY_SECONDS = 86_400.0
DEFAULT_HALF_LIFE_SECONDS = 30 * DAY_SECONDS


class UnknownItem(MarqueeError, LookupError):
    """The item has never been seen by this model; the HTTP layer answers 404."""


class IdMap:
    """External string ids <-> dense indices. Append-only, so an index never changes meaning."""

    def __init__(self, ids: Iterable[str] = ()) -> None:
        self._ids: list[str] = []
        self._index: dict[str, int] = {}
        for external in ids:
            self.add(external)

    def add(self, external: str) -> int:
        """The id's index, assigning the next free one if the id is new."""
        index = self._index.get(external)
        if index is None:
            index = self._index[external] = len(self._ids)
            self._ids.append(external)
        return index

    def get(self, external: str) -> int | None:
        return self._index.get(external)

    def external(self, index: int) -> str:
        return self._ids[index]

    def __len__(self) -> int:
        return len(self._ids)

    def __contains__(self, external: object) -> bool:
        return external in self._index

    def __iter__(self) -> Iterator[str]:
        return iter(self._ids)


@dataclass(frozen=True)
class AlsParams:
    # Defaults: the best of a small grid on MovieLens-100k (see services/recommender/evaluation.py);
    # strong regularization matters more there than the number of factors.
    factors: int = 64
    regularization: float = 20.0
    alpha: float = 1.0
    iterations: int = 15
    random_state: int = 42

    def __post_init__(self) -> None:
        if self.factors < 1 or self.iterations < 1:
            raise ValueError("factors and iterations must be >= 1")
        if self.regularization < 0 or self.alpha <= 0:
            raise ValueError("regularization must be >= 0 and alpha > 0")


@functools.cache
def _threadpools() -> ThreadpoolController:
    # Inspecting the loaded libraries costs ~0.5 ms; once per process keeps fold-ins fast.
    return ThreadpoolController()


def blas_single_thread():
    """implicit parallelises itself; a multi-threaded BLAS underneath oversubscribes the cores."""
    return _threadpools().limit(limits=1, user_api="blas")


def as_csr(matrix) -> scipy.sparse.csr_matrix:
    # implicit 0.7.3 rejects scipy's csr_array with a ValueError; it wants csr_matrix, float32.
    return scipy.sparse.csr_matrix(matrix, dtype=np.float32)


def new_als(params: AlsParams, num_threads: int = 0) -> AlternatingLeastSquares:
    # The CPU class explicitly: the ``implicit.als.AlternatingLeastSquares`` factory may pick
    # the GPU, whose models neither pickle nor fold in the same way.
    with blas_single_thread():  # the constructor warns if BLAS is multi-threaded
        return AlternatingLeastSquares(
            factors=params.factors,
            regularization=params.regularization,
            alpha=params.alpha,
            iterations=params.iterations,
            random_state=params.random_state,
            num_threads=num_threads,
        )


def train_als(matrix, params: AlsParams, *, num_threads: int = 0) -> AlternatingLeastSquares:
    """Fit ALS on a users x items matrix of raw confidences (see the module docstring)."""
    model = new_als(params, num_threads)
    with blas_single_thread():
        model.fit(as_csr(matrix), show_progress=False)
    return model


def als_from_factors(
    user_factors: np.ndarray, item_factors: np.ndarray, params: AlsParams, *, num_threads: int = 0
) -> AlternatingLeastSquares:
    """A model rebuilt from stored factors; ``params`` matter for fold-in (alpha, regularization)."""
    model = new_als(params, num_threads)
    model.user_factors = np.ascontiguousarray(user_factors, dtype=np.float32)
    model.item_factors = np.ascontiguousarray(item_factors, dtype=np.float32)
    return model


def decayed_popularity(
    item_indices: np.ndarray,
    weights: np.ndarray,
    timestamps: np.ndarray,
    *,
    n_items: int,
    now: float,
    half_life_seconds: float = DEFAULT_HALF_LIFE_SECONDS,
) -> np.ndarray:
    """Per item: the sum of ``weight * 0.5 ** (age / half_life)`` over its interactions."""
    # A clock running ahead of ``now`` must not make an event count more than its weight.
    ages = np.maximum(now - np.asarray(timestamps, dtype=np.float64), 0.0)
    decayed = np.asarray(weights, dtype=np.float64) * np.exp2(-ages / half_life_seconds)
    return np.bincount(item_indices, weights=decayed, minlength=n_items)


def top_k(scores: np.ndarray, k: int, exclude: np.ndarray | None = None) -> np.ndarray:
    """Indices of the k best finite scores, best first, never one in ``exclude``."""
    scores = np.array(scores, dtype=np.float64)  # a copy: the caller's array stays intact
    if exclude is not None and len(exclude):
        scores[exclude] = -np.inf
    finite = np.flatnonzero(np.isfinite(scores))
    if k <= 0 or not len(finite):
        return finite[:0]
    if len(finite) > k:
        finite = finite[np.argpartition(-scores[finite], k - 1)[:k]]
    # Ties go to the lower index, so equal scores rank the same way on every call.
    return finite[np.lexsort((finite, -scores[finite]))]


Scored = list[tuple[str, float]]


class Recommender:
    """What the service serves: ALS for users with factors, fold-in for new users with a
    history, time-decayed popularity for everyone else. Seen items are never returned
    (unless asked) and neither are non-finite scores, hidden or expired catalog items.

    ``catalog`` holds what the newsroom published about items (title, kind, tags, expiry);
    ``max_age_seconds`` ends a kind's items that long after publication. Items can have
    factors mapped from their content (:meth:`add_mapped`) until readers give them their own.
    ``shaping`` blends a freshness prior per kind into personal scores
    (:func:`.recency.freshened`) and caps how many items of one tag a recommended list holds.
    """

    def __init__(
        self,
        model: AlternatingLeastSquares,
        users: IdMap,
        items: IdMap,
        seen: scipy.sparse.csr_matrix,
        popularity: np.ndarray,
        kinds: Iterable[str] | None = None,
        catalog: dict[str, ItemInfo] | None = None,
        max_age_seconds: dict[str, float] | None = None,
        shaping: Shaping | None = None,
    ) -> None:
        if model.item_factors.shape[0] != len(items) or len(popularity) != len(items):
            raise ValueError("item factors, popularity and the item id map disagree in length")
        kinds = np.array(["item"] * len(items) if kinds is None else list(kinds), dtype=object)
        if len(kinds) != len(items):
            raise ValueError("item kinds and the item id map disagree in length")
        if seen.shape != (len(users), len(items)):
            raise ValueError(f"seen is {seen.shape}, expected {(len(users), len(items))}")
        if model.user_factors.shape[0] > len(users):
            raise ValueError("more user factors than users in the id map")
        self.model, self.users, self.items = model, users, items
        # Serving and fold-in solve one user at a time: an OpenMP region across all cores
        # only adds wake-up latency (measured on MovieLens: p99 15 ms instead of 0.4 ms).
        self.model.num_threads = 1
        self._seen = as_csr(seen)
        # Fold-ins replace a user's row here instead of rebuilding the whole CSR matrix.
        self._history: dict[int, scipy.sparse.csr_matrix] = {}
        self.kinds = kinds
        self.popularity = np.asarray(popularity, dtype=np.float64)
        self.catalog: dict[str, ItemInfo] = dict(catalog or {})
        self.max_age_seconds = dict(max_age_seconds or {})
        self.shaping = shaping or Shaping()
        #: Per item: the epoch second from which it is not shown (inf: no end).
        self.until = np.full(len(items), np.inf)
        #: Per item: when it was published (epoch seconds) and its kind's freshness
        #: half-life (inf: it does not decay, which an item without ``published_at`` never does).
        self.published = np.zeros(len(items))
        self.half_life = np.full(len(items), np.inf)
        for item_id, info in self.catalog.items():
            self._apply(item_id, info)
        #: Items whose factors come from their content, not from readers (yet).
        self.mapped: set[int] = set()
        self._rank_popular()

    def _apply(self, item_id: str, info: ItemInfo) -> None:
        index = self.items.get(item_id)
        if index is not None:
            self.until[index] = info.until(self.max_age_seconds)
            self.published[index], self.half_life[index] = self._recency(info)
            self.kinds[index] = info.kind

    def _recency(self, info: ItemInfo | None) -> tuple[float, float]:
        if info is None or info.published_at is None:
            return 0.0, np.inf
        return info.published_at.timestamp(), self.shaping.half_life_seconds.get(info.kind, np.inf)

    def tags_of(self, index: int) -> tuple[str, ...]:
        info = self.catalog.get(self.items.external(index))
        return info.tags if info else ()

    def set_info(self, item_id: str, info: ItemInfo) -> None:
        """Adopt a catalog item's latest version: an item hidden or expired now is never
        shown from the next answer on."""
        self.catalog[item_id] = info
        self._apply(item_id, info)

    def title_of(self, item_id: str) -> str | None:
        info = self.catalog.get(item_id)
        return info.title if info else None

    def kind_of(self, item_id: str) -> str | None:
        index = self.items.get(item_id)
        if index is not None:
            return str(self.kinds[index])
        info = self.catalog.get(item_id)
        return info.kind if info else None

    def _hidden(self, now: float | None = None) -> np.ndarray:
        """Indices of the items not shown at ``now`` (default: the current time)."""
        return np.flatnonzero(self.until <= (time.time() if now is None else now))

    def add_mapped(self, item_id: str, factors: np.ndarray) -> None:
        """Give an item factors mapped from its content; readers' fold-in replaces them."""
        index = self.items.get(item_id)
        if index is None:
            info = self.catalog.get(item_id)
            index = self._add_item(item_id, info.kind if info else None)
        elif index not in self.mapped and self.factors_of("item", item_id) is not None:
            return  # readers already gave it factors
        _store_row(self.model, "item_factors", index, np.asarray(factors, dtype=np.float32))
        self.model._item_norms = self.model._YtY = None
        self.mapped.add(index)

    def _rank_popular(self) -> None:
        # Items nobody interacted with are not "popular": they never reach a cold user.
        self._popular_order = top_k(
            np.where(self.popularity > 0, self.popularity, -np.inf), len(self.items)
        )

    @property
    def user_factors(self) -> np.ndarray:
        return self.model.user_factors

    @property
    def item_factors(self) -> np.ndarray:
        return self.model.item_factors

    def has_factors(self, user_id: str) -> bool:
        return self._factor_row(self.users.get(user_id)) is not None

    def _factor_row(self, user: int | None) -> np.ndarray | None:
        # partial_fit_users pads skipped indices with zeros: an all-zero row means "none yet".
        if user is None or user >= self.model.user_factors.shape[0]:
            return None
        row = self.model.user_factors[user]
        return row if row.any() else None

    def seen_row(self, user: int) -> scipy.sparse.csr_matrix:
        """The user's confidences (1 x items); empty for a user known only by id."""
        if user in self._history:
            return self._history[user]
        if user < self._seen.shape[0]:
            return self._seen[user]
        return scipy.sparse.csr_matrix((1, len(self.items)), dtype=np.float32)

    def history_row(self, history: Iterable[tuple[str, float]]) -> scipy.sparse.csr_matrix:
        """A 1 x items confidence row; duplicates add up, items the model lacks are dropped
        (they have no factors until the next retrain or ``partial_fit_items``)."""
        columns, values = [], []
        for item_id, confidence in history:
            index = self.items.get(item_id)
            if index is not None:
                columns.append(index)
                values.append(confidence)
        rows = np.zeros(len(columns), dtype=np.int32)
        return as_csr(
            scipy.sparse.coo_matrix((values, (rows, columns)), shape=(1, len(self.items)))
        )

    def fold_in(self, user_id: str, history: Iterable[tuple[str, float]]) -> bool:
        """Recompute the user's factors from their FULL history (``partial_fit_users`` solves
        from scratch: given only new events it would forget the old ones). Returns whether
        the user now has factors; a history of unknown items only leaves them cold."""
        row = self.history_row(history)
        if not row.nnz:
            return False
        user = self.users.add(user_id)
        with blas_single_thread():
            self.model.partial_fit_users(np.array([user]), row)
        self._history[user] = row
        return True

    def factors_of(self, side: str, external_id: str) -> np.ndarray | None:
        """A user's or item's current factor row (a copy), or ``None`` if it has none."""
        ids, factors = (
            (self.users, self.model.user_factors)
            if side == "user"
            else (self.items, self.model.item_factors)
        )
        index = ids.get(external_id)
        if index is None or index >= factors.shape[0] or not factors[index].any():
            return None
        return factors[index].copy()

    def fold_in_items(
        self, histories: dict[str, Iterable[tuple[str, float]]], kinds: dict[str, str]
    ) -> list[str]:
        """Give items the model has never seen factors from their users (``partial_fit_items``),
        so a new article can be recommended before the next retrain. Only users with factors
        say anything about an item; an item none of them touched stays without factors.
        Returns the items that got factors."""
        fitted, rows, columns, values = [], [], [], []
        for item_id, users in histories.items():
            known = [(self.users.get(u), c) for u, c in users]
            known = [(u, c) for u, c in known if u is not None and self._factor_row(u) is not None]
            if not self.needs_readers_factors(item_id) or not known:
                continue
            for user, confidence in known:
                rows.append(len(fitted))
                columns.append(user)
                values.append(confidence)
            fitted.append(item_id)
        if not fitted:
            return []
        matrix = as_csr(
            scipy.sparse.coo_matrix(
                (values, (rows, columns)), shape=(len(fitted), self.model.user_factors.shape[0])
            )
        )
        indices = np.array(
            [
                self.items.get(item_id)
                if item_id in self.items
                else self._add_item(item_id, kinds.get(item_id))
                for item_id in fitted
            ]
        )
        with blas_single_thread():
            self.model.partial_fit_items(indices, matrix)
        self.mapped.difference_update(indices.tolist())
        return fitted

    def needs_readers_factors(self, item_id: str) -> bool:
        """Whether fold-in should give the item factors from its readers: it has none, or
        only ones mapped from its content."""
        index = self.items.get(item_id)
        return index is None or index in self.mapped

    def _add_item(self, item_id: str, kind: str | None) -> int:
        index = self.items.add(item_id)
        info = self.catalog.get(item_id)
        kind = info.kind if info else kind
        self.kinds = np.append(self.kinds, np.array([kind or "item"], dtype=object))
        self.until = np.append(self.until, info.until(self.max_age_seconds) if info else np.inf)
        published, half_life = self._recency(info)
        self.published = np.append(self.published, published)
        self.half_life = np.append(self.half_life, half_life)
        # No popularity until the next reload: a new item reaches users through ALS first.
        self.popularity = np.append(self.popularity, 0.0)
        self._seen.resize((self._seen.shape[0], len(self.items)))
        return index

    def set_factors(
        self,
        side: str,
        external_id: str,
        factors: np.ndarray,
        *,
        history: Iterable[tuple[str, float]] = (),
        kind: str | None = None,
    ) -> None:
        """Adopt factors another worker folded in (read back from Postgres), so every
        worker answers alike. A user's ``history`` keeps seen-item filtering exact."""
        vector = np.asarray(factors, dtype=self.model.user_factors.dtype)
        if side == "item":
            index = self.items.get(external_id)
            if index is None:
                index = self._add_item(external_id, kind)
            _store_row(self.model, "item_factors", index, vector)
            self.model._item_norms = self.model._YtY = None  # cached from the old factors
            self.mapped.discard(index)  # another worker's fold-in: readers' factors
            return
        user = self.users.add(external_id)
        _store_row(self.model, "user_factors", user, vector)
        self.model._user_norms = None
        self._history[user] = self.history_row(history)

    def recommend(
        self,
        user_id: str,
        k: int = 10,
        exclude_seen: bool = True,
        history: Iterable[tuple[str, float]] | None = None,
        kind: str | None = None,
        max_per_tag: int | None = None,
    ) -> Scored:
        """Best k items for the user, of ``kind`` only if given, at most ``max_per_tag`` of
        one tag (default: the recommender's). ``history`` (the user's full history) is only
        used for a user without factors: it is folded in on the fly, without being stored.
        Personal scores carry the freshness prior; the popularity fallback does not (its
        decay already discounts reads by their age: see :meth:`popular`)."""
        cap = self.shaping.max_per_tag if max_per_tag is None else max_per_tag
        user = self.users.get(user_id)
        vector = self._factor_row(user)
        if vector is not None:
            seen = self.seen_row(user)
        else:
            seen = self.history_row(history or ())
            if not seen.nnz:
                return self._popular(k, set(seen.indices) if exclude_seen else set(), kind, cap)
            with blas_single_thread():
                vector = self.model.recalculate_user(0, seen)
        now = time.time()
        scores = freshened(
            self.model.item_factors @ vector,
            self.published,
            self.half_life,
            now,
            self.shaping.weight,
        )
        exclude = [seen.indices, self._hidden(now)] if exclude_seen else [self._hidden(now)]
        if kind is not None:
            exclude.append(np.flatnonzero(self.kinds != kind))
        excluded = np.concatenate(exclude)
        best = capped_top_k(lambda n: top_k(scores, n, excluded), k, self.tags_of, cap)
        return [(self.items.external(i), float(scores[i])) for i in best]

    def popular(
        self,
        k: int = 10,
        exclude: Iterable[str] = (),
        kind: str | None = None,
        max_per_tag: int = 0,
    ) -> Scored:
        """Most popular items (time-decayed), skipping the item ids in ``exclude``, at most
        ``max_per_tag`` of one tag (0: no cap). No freshness prior: popularity already decays
        by when items were read (``recommender_popularity_half_life_days``), so an old item
        stays only while people still read it, and a second prior would count age twice."""
        return self._popular(k, {self.items.get(item_id) for item_id in exclude}, kind, max_per_tag)

    def _popular(
        self, k: int, skip: set[int | None], kind: str | None = None, max_per_tag: int = 0
    ) -> Scored:
        now = time.time()
        candidates = (
            index
            for index in self._popular_order
            if self.until[index] > now
            and index not in skip
            and (kind is None or self.kinds[index] == kind)
        )
        return [
            (self.items.external(i), float(self.popularity[i]))
            for i in capped(candidates, k, self.tags_of, max_per_tag)
        ]

    def similar_items(self, item_id: str, k: int = 10) -> Scored:
        """Cosine-similar items by ALS factors, the item itself left out."""
        item = self.items.get(item_id)
        if item is None:
            raise UnknownItem(f"unknown item {item_id!r}")
        factors = self.model.item_factors
        norms = np.linalg.norm(factors, axis=1)
        if norms[item] == 0:  # no interactions yet: no direction to compare with
            return []
        with np.errstate(divide="ignore", invalid="ignore"):
            scores = factors @ factors[item] / (norms * norms[item])
        best = top_k(scores, k, np.append(self._hidden(), item))
        return [(self.items.external(i), float(scores[i])) for i in best]


def _store_row(model: AlternatingLeastSquares, name: str, index: int, vector: np.ndarray) -> None:
    """Set row ``index`` of ``model.<name>``, growing the matrix with zero rows if needed."""
    factors = getattr(model, name)
    if index >= factors.shape[0]:
        grown = np.zeros((index + 1, factors.shape[1]), dtype=factors.dtype)
        grown[: factors.shape[0]] = factors
        setattr(model, name, factors := grown)
    factors[index] = vector


def fit_recommender(
    events: Iterable[tuple[str, str, float, float]],
    params: AlsParams,
    *,
    now: float | None = None,
    half_life_seconds: float = DEFAULT_HALF_LIFE_SECONDS,
    num_threads: int = 0,
) -> Recommender:
    """Train a Recommender on ``(user_id, item_id, confidence, timestamp)`` events.

    ``now`` (default: the latest timestamp) anchors the popularity decay.
    """
    if not isinstance(events, Interactions):
        events = Interactions.from_events(events)
    users, items = IdMap(events.user_ids), IdMap(events.item_ids)
    rows, columns, weights, times = events.users, events.items, events.weights, events.times
    if not len(rows):
        raise ValueError("no events to train on")
    shape = (len(users), len(items))
    # Duplicate (user, item) pairs add up: confidence is the sum of the interactions' weights.
    seen = as_csr(scipy.sparse.coo_matrix((weights, (rows, columns)), shape=shape))
    model = train_als(seen, params, num_threads=num_threads)
    popularity = decayed_popularity(
        columns,
        weights,
        times,
        n_items=len(items),
        now=float(times.max()) if now is None else now,
        half_life_seconds=half_life_seconds,
    )
    return Recommender(model, users, items, seen, popularity)
