"""The learned re-ranker offline: NDCG@10 of ALS's top-50 re-ranked against ALS's own order."""

from __future__ import annotations

from .harness import Context, Result, benchmark

TARGET = 1.12


@benchmark(
    "reranker_offline_ndcg",
    unit="ndcg@10",
    target_ratio=TARGET,
    needs_kafka=False,
    description=f"""
        NDCG@10 of the learned re-ranker (river's online logistic regression over
        `services/recommender/features.py`) re-ordering bare ALS's top-50 per user on
        MovieLens-100k under the `per_user_temporal` protocol, against ALS's own order of
        the same candidates, same split. The re-ranker learns only from the training
        period: ALS fitted on its earlier part proposes the top 50, and an item the user
        read in its later part is the click (the rest are shown-but-not-clicked); see
        docs/reranker.md. Fixed seeds, so the run is deterministic. Target from issue 19:
        ≥ {TARGET}× ALS order.
    """,
)
def reranker_offline_ndcg(ctx: Context) -> Result:
    from services.recommender.reranker_offline import evaluate_reranker
    from shared.data.movielens import load_films, load_ratings, load_readers

    result = evaluate_reranker(
        load_ratings(), films=load_films(), readers=load_readers(), progress=ctx.progress
    )
    ndcg = result["ndcg@10"]
    strongest = sorted(result["weights"].items(), key=lambda kv: -abs(kv[1]))[:5]
    return Result(
        value=ndcg["reranked"],
        baseline_name="ALS order",
        baseline_value=ndcg["als"],
        notes=(
            f"trained on {result['impressions']:,} impressions with {result['clicks']:,} clicks;"
            f" {result['test_users']:,} test users",
            "largest weights: " + ", ".join(f"{name} {w:+.2f}" for name, w in strongest),
            f"took {result['seconds']:.0f} s",
        ),
    )
