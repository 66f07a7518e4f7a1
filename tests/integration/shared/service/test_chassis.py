"""The service chassis as a real Faust worker: probes, token, metrics, heartbeats, shutdown."""

from __future__ import annotations

import json
import signal

import pytest

from shared.events import EventCodec
from shared.topics import TOPICS
from tests.integration.kafka_helpers import read_all
from tests.integration.worker_helpers import chassis_worker, get

TOKEN = "s3cret-token-for-the-test"


@pytest.fixture
def worker(topics, tmp_path):
    with chassis_worker(topics, tmp_path, MARQUEE_HTTP_TOKEN=TOKEN) as (proc, port):
        yield proc, port, topics


def test_probes_token_metrics_and_heartbeats(worker):
    proc, port, settings = worker
    status, body = get(port, "/livez")
    assert status == 200 and json.loads(body)["status"] == "ok"

    status, body = get(port, "/readyz")
    checks = json.loads(body)["checks"]
    assert status == 200
    assert checks["kafka"]["ok"] and checks["postgres"]["ok"]

    assert get(port, "/metrics")[0] == 401
    assert get(port, "/metrics", token="wrong")[0] == 401
    status, body = get(port, "/metrics", token=TOKEN)
    assert status == 200
    assert b'marquee_heartbeats_sent_total{service="probe"}' in body

    beats = [EventCodec().decode(r.value) for r in read_all(settings, "ops.heartbeats", 2)]
    assert [b.data.status for b in beats[:1]] == ["starting"]
    assert all(b.data.instance == "probe-1" and b.data.service == "probe" for b in beats)


def test_sigterm_stops_the_worker_cleanly(worker, tmp_path):
    proc, port, _ = worker
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 0
    # A log file gets log lines, not a terminal spinner's escape codes.
    assert "\x1b" not in (tmp_path / "worker.log").read_text()


def test_worker_creates_the_registry_topics_at_startup(settings, admin, tmp_path):
    try:
        with chassis_worker(settings, tmp_path):
            present = set(admin.list_topics())
        assert {f"{settings.topic_prefix}{name}" for name in TOPICS} <= present
    finally:
        admin.delete_topics([t for t in admin.list_topics() if t.startswith(settings.topic_prefix)])
