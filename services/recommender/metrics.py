"""The recommender's metrics, defined once on the service's injected registry."""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import Counter, Gauge, Histogram

from shared.metrics import Metrics

from .persistence import Version


@dataclass(frozen=True)
class RecommenderMetrics:
    consumed: Counter
    stored: Counter
    duplicates: Counter
    write_seconds: Histogram
    failures: Counter
    fold_in_seconds: Histogram
    folded: Counter
    adopted: Counter
    retrains: Counter
    retrain_seconds: Histogram
    model_version: Gauge
    #: Impressions by outcome: published, failed, dropped.
    impressions: Counter
    #: ``precision`` and ``ndcg``: held-out scores @10 of the served version, by model.
    quality: dict[str, Gauge]

    @classmethod
    def create(cls, m: Metrics) -> RecommenderMetrics:
        return cls(
            consumed=m.counter(
                "marquee_events_consumed_total", "Events read from Kafka", ("topic",)
            ),
            stored=m.counter(
                "marquee_interactions_stored_total", "New interactions written to Postgres"
            ),
            duplicates=m.counter(
                "marquee_interactions_duplicate_total", "Redelivered events skipped"
            ),
            write_seconds=m.histogram(
                "marquee_batch_write_seconds", "Postgres write time per batch"
            ),
            failures=m.counter(
                "marquee_batch_failures_total", "Batch attempts that failed and were retried"
            ),
            fold_in_seconds=m.histogram("marquee_fold_in_seconds", "Fold-in time per batch"),
            folded=m.counter(
                "marquee_fold_ins_total", "Users and items folded into the model", ("side",)
            ),
            adopted=m.counter(
                "marquee_fold_ins_adopted_total", "Fold-ins adopted from other workers"
            ),
            retrains=m.counter(
                "marquee_retrains_total", "Scheduled retrains by outcome", ("outcome",)
            ),
            retrain_seconds=m.histogram(
                "marquee_retrain_seconds",
                "Scheduled retrain time",
                buckets=(1, 5, 15, 60, 300, 1800),
            ),
            model_version=m.gauge("marquee_model_version", "Active model version served (0: none)"),
            impressions=m.counter(
                "marquee_impressions_total", "Served lists sent to impressions", ("outcome",)
            ),
            quality={
                name: m.gauge(
                    f"marquee_model_{name}_at_10",
                    f"Held-out {name}@10 of the served model",
                    ("model",),
                )
                for name in ("precision", "ndcg")
            },
        )

    def show(self, version: Version) -> None:
        """Report ``version`` as the one served, with its held-out quality."""
        self.model_version.set(version.id)
        holdout = version.metrics.get("holdout", {})
        for model, scores in holdout.items():
            for name, gauge in self.quality.items():
                if f"{name}@10" in scores:
                    gauge.labels(model).set(scores[f"{name}@10"])
