"""The learned re-ranker: river's online logistic regression of P(click | shown) over
:mod:`.features`, and the re-ranking of a candidate list by it (pure logic: no Kafka, no
database).

Trained one (features, clicked) pair at a time, as impressions and their clicks arrive:
every item shown and not clicked is a negative. Numeric features are standardised online
(``StandardScaler``), categorical ones one-hot encoded with ``drop_zeros=True`` (without it
river's encoder emits a zero for every category it ever saw, ~800 updates/s instead of
~100k). A checkpoint is river's objects pickled; :func:`from_bytes` unpickles only the
classes such a pipeline is made of, so a tampered row cannot run code.
"""

from __future__ import annotations

import io
import pickle
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass

from river import compose, linear_model, optim, preprocessing

from shared.errors import MarqueeError

from .features import CATEGORICAL, NUMERIC, FeatureSource

#: Written with each checkpoint; a reader refuses a format it does not know.
MODEL_FORMAT = "river-0.26-pickle-v1"
DEFAULT_LEARNING_RATE = 0.01
DEFAULT_L2 = 1e-4


class RerankerError(MarqueeError):
    """A re-ranker checkpoint could not be read (poison: reading it again fails again)."""


def new_pipeline(learning_rate: float = DEFAULT_LEARNING_RATE, l2: float = DEFAULT_L2):
    numeric = compose.Select(*NUMERIC) | preprocessing.StandardScaler()
    categorical = compose.Select(*CATEGORICAL) | preprocessing.OneHotEncoder(drop_zeros=True)
    return (numeric + categorical) | linear_model.LogisticRegression(
        optimizer=optim.SGD(learning_rate), l2=l2
    )


@dataclass(frozen=True, slots=True)
class Candidate:
    """An item a base ranker proposes, with its features (see :mod:`.features`)."""

    item_id: str
    features: dict


#: A base ranker's list, best first: ``(item_id, score)``.
Scored = Sequence[tuple[str, float]]


def candidates_for(
    source: FeatureSource, user_id: str, scored: Scored, *, at: float | None = None
) -> list[Candidate]:
    """The features of each item of a base ranker's list for ``user_id`` (rank = position)."""
    top = scored[0][1] if scored else None
    return [
        Candidate(item, source.features(user_id, item, score, rank, top_score=top, at=at))
        for rank, (item, score) in enumerate(scored)
    ]


def impression_pairs(
    source: FeatureSource,
    user_id: str,
    shown: Scored,
    clicked: Collection[str],
    *,
    at: float | None = None,
) -> list[tuple[dict, bool]]:
    """One impression as training pairs: every item shown, clicked or not (a negative)."""
    return [
        (c.features, c.item_id in clicked) for c in candidates_for(source, user_id, shown, at=at)
    ]


class Reranker:
    """P(click) for a candidate; re-orders a list by it."""

    def __init__(self, pipeline=None) -> None:
        self.pipeline = pipeline if pipeline is not None else new_pipeline()
        self.updates = 0

    def learn(self, features: dict, clicked: bool) -> None:
        self.pipeline.learn_one(features, bool(clicked))
        self.updates += 1

    def learn_many(self, pairs: Iterable[tuple[dict, bool]]) -> int:
        n = 0
        for features, clicked in pairs:
            self.learn(features, clicked)
            n += 1
        return n

    def click_probability(self, features: dict) -> float:
        return float(self.pipeline.predict_proba_one(features).get(True, 0.0))

    def rerank(self, candidates: Sequence[Candidate]) -> list[tuple[str, float]]:
        """``(item_id, P(click))``, most likely click first; ties keep the given order."""
        scored = [(c.item_id, self.click_probability(c.features)) for c in candidates]
        order = sorted(range(len(scored)), key=lambda i: (-scored[i][1], i))
        return [scored[i] for i in order]

    def rerank_scored(
        self, source: FeatureSource, user_id: str, scored: Scored, *, at: float | None = None
    ) -> list[tuple[str, float]]:
        """What serving calls: re-order a base ranker's top-N for ``user_id`` (see
        docs/reranker.md); the scores returned are click probabilities."""
        return self.rerank(candidates_for(source, user_id, scored, at=at))

    def weights(self) -> dict[str, float]:
        """The logistic regression's weight per (encoded) feature: what it learnt."""
        return dict(self.pipeline[-1].weights)

    def to_bytes(self) -> bytes:
        return pickle.dumps(self.pipeline, protocol=pickle.HIGHEST_PROTOCOL)

    @classmethod
    def from_bytes(cls, data: bytes, model_format: str = MODEL_FORMAT) -> Reranker:
        if model_format != MODEL_FORMAT:
            raise RerankerError(
                f"unknown re-ranker format {model_format!r}; this reads {MODEL_FORMAT}"
            )
        try:
            pipeline = _PipelineUnpickler(io.BytesIO(data)).load()
        except (pickle.UnpicklingError, EOFError, AttributeError, ImportError) as exc:
            raise RerankerError(f"cannot read the re-ranker checkpoint: {exc}") from None
        if not isinstance(pipeline, compose.Pipeline):
            raise RerankerError(f"the checkpoint holds a {type(pipeline).__name__}, not a pipeline")
        return cls(pipeline)


#: Modules a pickled pipeline may name (river's own, and the containers its state uses).
_ALLOWED_MODULES = ("river.", "collections", "copyreg")
_ALLOWED_BUILTINS = {"dict", "list", "tuple", "set", "frozenset", "float", "int", "bool", "str"}


class _PipelineUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if module == "builtins" and name in _ALLOWED_BUILTINS:
            return super().find_class(module, name)
        if module.startswith(_ALLOWED_MODULES):
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"{module}.{name} is not part of a re-ranker pipeline")
