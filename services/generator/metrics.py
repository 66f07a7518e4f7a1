"""The generator's metrics, defined once on the service's injected registry."""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import Counter, Gauge, Histogram

from shared.metrics import Metrics


@dataclass(frozen=True)
class GeneratorMetrics:
    queue_depth: Gauge
    batch_size: Histogram
    first_token_seconds: Histogram
    tokens_per_second: Histogram
    request_seconds: Histogram
    #: Replies published, by status (``ok``, ``error``).
    replies: Counter

    @classmethod
    def create(cls, m: Metrics) -> GeneratorMetrics:
        return cls(
            queue_depth=m.gauge("marquee_generator_queue_depth", "Requests waiting for a batch"),
            batch_size=m.histogram(
                "marquee_generator_batch_size",
                "Requests per batch",
                buckets=(1, 2, 4, 8, 16, 32, 64),
            ),
            first_token_seconds=m.histogram(
                "marquee_generator_first_token_seconds",
                "From dequeue to a request's first token",
                buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
            ),
            tokens_per_second=m.histogram(
                "marquee_generator_tokens_per_second",
                "Generated tokens per second, per request",
                buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500),
            ),
            request_seconds=m.histogram(
                "marquee_generator_request_seconds",
                "From a request's envelope time to its reply",
                buckets=(0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600),
            ),
            replies=m.counter("marquee_generator_replies_total", "Replies published", ("status",)),
        )
