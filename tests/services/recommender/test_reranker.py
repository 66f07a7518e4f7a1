"""The re-ranker learns what clicks depend on, re-ranks by it, and checkpoints safely."""

from __future__ import annotations

import pickle
import random

import pytest

from services.recommender.features import CATEGORICAL, NUMERIC
from services.recommender.reranker import Candidate, Reranker, RerankerError, impression_pairs
from services.recommender.reranker_offline import train_reranker


def features(rng: random.Random, **fixed) -> dict:
    f = {name: rng.random() for name in NUMERIC}
    f.update(kind="film", gender=rng.choice("MF"), occupation=rng.choice(["a", "b", "c"]))
    f.update(fixed)
    return f


def synthetic(n: int, seed: int = 1) -> list[tuple[dict, bool]]:
    """Clicks depend on tag_match only (P = 0.05 .. 0.65); every other feature is noise."""
    rng = random.Random(seed)
    pairs = []
    for _ in range(n):
        f = features(rng)
        pairs.append((f, rng.random() < 0.05 + 0.6 * f["tag_match"]))
    return pairs


@pytest.fixture(scope="module")
def trained() -> Reranker:
    return train_reranker(synthetic(6_000), epochs=1, seed=0)


def test_a_feature_clicks_depend_on_gets_the_largest_positive_weight(trained):
    weights = trained.weights()
    assert weights["tag_match"] > 0.5
    noise = [abs(w) for name, w in weights.items() if name in NUMERIC and name != "tag_match"]
    assert weights["tag_match"] > 2 * max(noise)
    assert trained.updates == 6_000


def test_rerank_puts_the_likelier_click_first(trained):
    rng = random.Random(7)
    low, high = features(rng, tag_match=0.0), features(rng, tag_match=1.0)
    ranked = trained.rerank([Candidate("low", low), Candidate("high", high)])
    assert [item for item, _ in ranked] == ["high", "low"]
    assert 0 < ranked[1][1] < ranked[0][1] < 1


def test_rerank_keeps_the_given_order_on_ties():
    untrained = Reranker()
    f = features(random.Random(0))
    assert [i for i, _ in untrained.rerank([Candidate(x, f) for x in "cab"])] == list("cab")


def test_categorical_features_are_one_hot_without_zeros(trained):
    # drop_zeros: a category a pair lacks is not a feature of it (river would run ~100x slower).
    union = trained.pipeline.steps["TransformerUnion"]
    encoded = union.transform_one(features(random.Random(5), **{c: "x" for c in CATEGORICAL}))
    assert set(encoded) - set(NUMERIC) == {f"{c}_x" for c in CATEGORICAL}


def test_checkpoint_round_trips(trained):
    copy = Reranker.from_bytes(trained.to_bytes())
    f = features(random.Random(3))
    # Equal to rounding: river sums over sets, whose order a rebuilt copy need not keep.
    assert copy.click_probability(f) == pytest.approx(trained.click_probability(f), rel=1e-12)


class Boom:
    def __reduce__(self):
        return (print, ("this must never run",))


@pytest.mark.parametrize(
    ("data", "fmt"),
    [
        (pickle.dumps(Boom()), "river-0.26-pickle-v1"),
        (pickle.dumps({"not": "a pipeline"}), "river-0.26-pickle-v1"),
        (b"garbage", "river-0.26-pickle-v1"),
        (b"", "onnx"),
    ],
)
def test_a_checkpoint_that_is_not_a_pipeline_is_refused(data, fmt):
    with pytest.raises(RerankerError):
        Reranker.from_bytes(data, fmt)


def test_an_impression_is_a_positive_per_click_and_a_negative_per_other_item():
    from services.recommender.features import FeatureSource

    source = FeatureSource.from_events([("u", "a", 1.0, 0.0)], now=10.0)
    shown = [("a", 2.0), ("b", 1.0), ("c", 0.5)]
    pairs = impression_pairs(source, "u", shown, clicked={"b"})
    assert [clicked for _, clicked in pairs] == [False, True, False]
    assert [f["als_relative"] for f, _ in pairs] == [1.0, 0.5, 0.25]


def test_serving_reranks_a_scored_list_by_click_probability(trained):
    from services.recommender.features import FeatureSource, ItemFacts

    # Clicks follow tag_match: "b" shares the user's only tag, "a" does not.
    items = {
        "seen": ItemFacts(tags=("x",)),
        "a": ItemFacts(tags=("y",)),
        "b": ItemFacts(tags=("x",)),
    }
    source = FeatureSource.from_events([("u", "seen", 1.0, 0.0)], now=10.0, items=items)
    ranked = trained.rerank_scored(source, "u", [("a", 1.0), ("b", 0.99)])
    assert [item for item, _ in ranked] == ["b", "a"]
