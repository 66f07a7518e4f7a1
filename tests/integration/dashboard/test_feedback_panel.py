"""The Feedback panel against a real feedback service, broker and Postgres: impressions and
clicks in, the panel's CTR, intervals and position curve equal to what ``/metrics/ctr``
answers and Postgres holds, lists/s from the impressions topic; and a panel that says so
when the feedback service is away."""

from __future__ import annotations

import json
import threading
import uuid
from datetime import UTC, datetime

from shared.cli.replay import Pacer
from shared.kafka.publisher import Publisher
from tests.integration.dashboard.test_api import FAST, SERVE, state, wait_for_state
from tests.integration.feedback.test_feedback import click, counted_in_postgres, feedback_worker
from tests.integration.feedback.test_feedback import impression as served
from tests.integration.worker_helpers import get, service_worker

PANEL = {"MARQUEE_DASHBOARD_FEEDBACK_SECONDS": "1", **FAST}
LISTS = 40


def publish_lists(topics, stop: threading.Event, ids: list[str]) -> None:
    """``LISTS`` lists of 3 at 10/s; the reader clicks position 1 of every 4th list and
    position 2 of every 5th."""
    pacer = Pacer(10.0)
    with Publisher(topics) as publisher:
        for n in range(LISTS):
            if stop.is_set():
                return
            pacer.wait(n)
            impression_id = f"imp-{uuid.uuid4().hex[:10]}"
            ids.append(impression_id)
            publisher.publish_sync(
                served(impression_id, ["a", "b", "c"], served_at=datetime.now(UTC))
            )
            if n % 4 == 0:
                publisher.publish_sync(click("a", impression_id))
            if n % 5 == 0:
                publisher.publish_sync(click("b", impression_id))


def test_the_panel_shows_what_the_feedback_service_counts(topics, engine, tmp_path):
    (tmp_path / "feedback").mkdir()
    (tmp_path / "dash").mkdir()
    stop, ids = threading.Event(), []
    with feedback_worker(topics, tmp_path / "feedback") as (_, feedback_port):
        url = f"http://127.0.0.1:{feedback_port}"
        with service_worker(
            topics, tmp_path / "dash", SERVE, MARQUEE_DASHBOARD_FEEDBACK_URL=url, **PANEL
        ) as (_, port):
            traffic = threading.Thread(target=publish_lists, args=(topics, stop, ids))
            traffic.start()
            try:
                live = wait_for_state(
                    port,
                    lambda s: (s["feedback"]["lists_per_second"] or 0) > 0,
                    what="lists/s from the impressions topic",
                )
            finally:
                traffic.join(timeout=60)
                stop.set()
            assert live["feedback"]["source"]["ok"]

            def settled(s) -> bool:
                (group,) = s["feedback"]["groups"]
                return group["current"]["lists"] == LISTS and group["current"]["clicks"] == 18

            body = wait_for_state(port, settled, what="every list and click counted")
            _, raw = get(feedback_port, "/metrics/ctr?window=300s")
            truth = json.loads(raw)

    panel = body["feedback"]
    (group,) = panel["groups"]
    assert group["label"] == "v7 als · home"
    # The feedback service's own numbers, interval included: no second definition of CTR.
    assert group["current"] == truth["groups"][0]
    assert (group["current"]["impressions"], group["current"]["clicks"]) == (3 * LISTS, 18)
    low, high = group["current"]["ci95"]
    assert low < 18 / 120 < high
    # Over time: one point per sample; the newest equals the current numbers.
    assert len(group["series"]) >= 2
    assert group["series"][-1][1:] == [round(18 / 120, 4), round(low, 4), round(high, 4), 120, 18]
    (curve,) = panel["positions"]
    clicks = {p["position"]: p["clicks"] for p in curve["points"]}
    assert clicks == {1: 10, 2: 8, 3: 0}
    assert counted_in_postgres(engine)["feedback_impressions"] == LISTS
    assert panel["lists_series"] and max(p[1] for p in panel["lists_series"]) > 0

    # No feedback service: the panel says so, every other panel still samples.
    with service_worker(
        topics,
        tmp_path / "dash",
        SERVE,
        MARQUEE_DASHBOARD_FEEDBACK_URL="http://127.0.0.1:9",
        **PANEL,
    ) as (_, port):
        body = wait_for_state(port, lambda s: s["feedback"]["source"]["error"], what="an error")
        assert "cannot reach the feedback service" in body["feedback"]["source"]["error"]
        assert state(port)["sources"]["kafka"]["ok"] is not None
