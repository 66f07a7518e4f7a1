"""Metric definitions follow the house naming rules; registries are per instance."""

from __future__ import annotations

import pytest

from shared.metrics import CONTENT_TYPE, FORBIDDEN_LABELS, Metrics


def test_counter_renders_with_total_suffix():
    m = Metrics()
    consumed = m.counter("marquee_events_consumed_total", "Events consumed.", ("topic",))
    consumed.labels("interactions").inc(3)
    text = m.render().decode()
    assert "# TYPE marquee_events_consumed_total counter" in text
    assert 'marquee_events_consumed_total{topic="interactions"} 3.0' in text
    assert "_total_total" not in text


def test_counter_without_total_gets_it_from_prometheus_client():
    m = Metrics()
    m.counter("marquee_retries", "Retries.").inc()
    assert "marquee_retries_total 1.0" in m.render().decode()


@pytest.mark.parametrize(
    "name",
    ["events_total", "marquee_", "marquee_Events", "marquee_1st", "app_marquee_x", "marquee-x"],
)
@pytest.mark.parametrize("kind", ["counter", "gauge", "histogram"])
def test_names_must_start_with_marquee(kind, name):
    with pytest.raises(ValueError, match="must match"):
        getattr(Metrics(), kind)(name, "doc")


@pytest.mark.parametrize("label", sorted(FORBIDDEN_LABELS))
@pytest.mark.parametrize("kind", ["counter", "gauge", "histogram"])
def test_unbounded_labels_are_rejected(kind, label):
    with pytest.raises(ValueError, match=f"unbounded label.*{label}"):
        getattr(Metrics(), kind)("marquee_things", "doc", ("topic", label))


def test_forbidden_labels_include_user_and_item_ids():
    assert {"user_id", "item_id", "request_id"} <= FORBIDDEN_LABELS


@pytest.mark.parametrize("kind", ["gauge", "histogram"])
def test_total_is_only_for_counters(kind):
    with pytest.raises(ValueError, match="_total is for counters"):
        getattr(Metrics(), kind)("marquee_lag_total", "doc")


def test_instances_have_independent_registries():
    a, b = Metrics(), Metrics()
    assert a.registry is not b.registry
    a.counter("marquee_events_total", "doc").inc(5)
    b.counter("marquee_events_total", "doc")  # same name in another registry is fine
    assert "marquee_events_total 5.0" in a.render().decode()
    assert "marquee_events_total 0.0" in b.render().decode()


def test_same_name_twice_in_one_registry_is_an_error():
    m = Metrics()
    m.gauge("marquee_lag_messages", "doc")
    with pytest.raises(ValueError):
        m.gauge("marquee_lag_messages", "doc")


def test_render_contains_gauge_and_histogram():
    m = Metrics(service="recommender")
    lag = m.gauge("marquee_consumer_lag_messages", "Lag.", ("topic", "partition"))
    lag.labels("interactions", "0").set(7)
    h = m.histogram("marquee_batch_seconds", "Batch time.", buckets=(0.1, 1.0))
    h.observe(0.5)
    text = m.render().decode()
    assert 'marquee_consumer_lag_messages{partition="0",topic="interactions"} 7.0' in text
    assert 'marquee_batch_seconds_bucket{le="0.1"} 0.0' in text
    assert 'marquee_batch_seconds_bucket{le="1.0"} 1.0' in text
    assert "marquee_batch_seconds_count 1.0" in text
    assert CONTENT_TYPE.startswith("text/plain")
