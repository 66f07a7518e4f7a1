"""Recommendation quality on real data: the served recommender against popularity.

One evaluation (both protocols, MovieLens-100k from the recbole wheel) feeds four figures;
it is deterministic (fixed seed), so its "noise" is nil and the ratio is the whole story.
"""

from __future__ import annotations

import functools

from .harness import Context, Result, benchmark

_TARGETS = {"per_user_temporal": 1.6, "global_temporal": 1.0}


@functools.cache
def _evaluation() -> dict:
    from services.recommender.evaluation import evaluate
    from shared.data.movielens import load_ratings

    return evaluate(load_ratings())


def _figure(protocol: str, metric: str):
    name = f"recommender_{protocol}_{metric.split('@')[0]}"

    @benchmark(
        name,
        unit=metric,
        target_ratio=_TARGETS[protocol],
        needs_kafka=False,
        command="make bench NAME=" + name,
        description=f"""
            {metric} of the served recommender's code path (`Recommender.recommend`: ALS,
            fold-in, cold-start popularity; the HTTP endpoint is to call the same) on
            MovieLens-100k under the `{protocol}` protocol, against
            time-decayed popularity in the same run; metrics as implicit's
            ranking_metrics_at_k defines them, K=10, training items excluded. Also printed
            by `marquee eval`. Target from issue 3: ≥ {_TARGETS[protocol]}× popularity.
        """,
    )
    def run(ctx: Context) -> Result:
        models = _evaluation()["protocols"][protocol]["models"]
        return Result(
            value=models["served"][metric],
            baseline_name="popularity",
            baseline_value=models["popularity"][metric],
            notes=(f"bare ALS: {models['als'][metric]:.4f}",),
        )

    return run


for _protocol in _TARGETS:
    for _metric in ("precision@10", "ndcg@10"):
        _figure(_protocol, _metric)
