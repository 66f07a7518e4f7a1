"""Prometheus metrics with the house naming rules enforced at definition time.

Rules (see STYLE.md): ``marquee_`` prefix, base units as suffixes, ``_total`` only on
counters (prometheus_client adds it), bounded labels only. Registries are injected:
each service (and each test) owns a :class:`~prometheus_client.CollectorRegistry`.
"""

from __future__ import annotations

import re

from prometheus_client import CONTENT_TYPE_LATEST as CONTENT_TYPE
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

_NAME = re.compile(r"^marquee_[a-z][a-z0-9_]*$")
#: Unbounded identifiers would create one time series per user, item or request.
FORBIDDEN_LABELS = frozenset({"user_id", "item_id", "request_id", "event_id", "id", "key"})

__all__ = ["CONTENT_TYPE", "Metrics"]


class Metrics:
    """Factory for metrics registered in one injected registry."""

    def __init__(
        self, registry: CollectorRegistry | None = None, service: str | None = None
    ) -> None:
        self.registry = registry if registry is not None else CollectorRegistry(auto_describe=True)
        self.service = service

    def _check(self, name: str, labels: tuple[str, ...]) -> None:
        if not _NAME.match(name):
            raise ValueError(f"metric {name!r} must match {_NAME.pattern}")
        bad = FORBIDDEN_LABELS.intersection(labels)
        if bad:
            raise ValueError(f"metric {name!r}: unbounded label(s) {sorted(bad)}")

    def counter(self, name: str, doc: str, labels: tuple[str, ...] = ()) -> Counter:
        if name.endswith("_total"):
            name = name[: -len("_total")]  # prometheus_client appends it
        self._check(name, labels)
        return Counter(name, doc, labels, registry=self.registry)

    def gauge(self, name: str, doc: str, labels: tuple[str, ...] = ()) -> Gauge:
        self._check(name, labels)
        if name.endswith("_total"):
            raise ValueError(f"gauge {name!r}: _total is for counters")
        return Gauge(name, doc, labels, registry=self.registry)

    def histogram(
        self,
        name: str,
        doc: str,
        labels: tuple[str, ...] = (),
        buckets: tuple[float, ...] = Histogram.DEFAULT_BUCKETS,
    ) -> Histogram:
        self._check(name, labels)
        if name.endswith("_total"):
            raise ValueError(f"histogram {name!r}: _total is for counters")
        return Histogram(name, doc, labels, registry=self.registry, buckets=buckets)

    def render(self) -> bytes:
        """The text exposition for ``GET /metrics``."""
        return generate_latest(self.registry)
