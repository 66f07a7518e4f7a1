"""The whole system, as `make demo` runs it: interactions in -> recommendations out, content
requests in -> exactly one reply each, a generated article recommended by its content before
anyone read it, simulated readers' clicks attributed and counted, and all of it visible
through the dashboard's API while it runs."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
import time
from collections import Counter
from contextlib import ExitStack

import pytest

from shared.events import EventCodec
from tests.integration.kafka_helpers import read_all, record_count
from tests.integration.stack_helpers import cli_env
from tests.integration.worker_helpers import free_port, get


def dashboard_state(port: int) -> dict | None:
    try:
        status, body = get(port, "/api/state")
    except OSError:
        return None
    return json.loads(body) if status == 200 else None


def free_ports(services: int = 5) -> int:
    """A port whose next ones are free as well (the demo's services take base, +1, ...)."""
    while True:
        base = free_port()
        with ExitStack() as stack:
            try:
                for port in range(base + 1, base + services):
                    stack.enter_context(socket.socket()).bind(("127.0.0.1", port))
            except OSError:
                continue
        return base


@pytest.mark.timeout(900)
def test_the_demo_runs_the_whole_pipeline(topics, tmp_path):
    base = free_ports()
    demo = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "shared.cli.main",
            "demo",
            "--limit",
            "12000",
            "--rate",
            "3000",
            "--duration",
            "150",
            "--max-new-tokens",
            "24",
            "--base-port",
            str(base),
        ],  # fmt: skip
        env=cli_env(topics) | {"MARQUEE_RUN_DIR": str(tmp_path)},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=tmp_path,
    )
    dashboard, seen = base + 2, {}
    try:
        # While it runs, the dashboard shows the traffic, the model and the generated pieces.
        deadline = time.monotonic() + 150
        while time.monotonic() < deadline and demo.poll() is None:
            state = dashboard_state(dashboard)
            if state:
                rate = state["overview"]["throughput"].get("interactions", {})
                if rate.get("events_per_second", 0) > 0:
                    seen["throughput"] = rate["events_per_second"]
                if any(v["status"] == "active" for v in state["recommender"]["versions"]):
                    seen["model"] = True
                if state["generator"]["latest"]:
                    seen["pieces"] = len(state["generator"]["latest"])
                # The simulated readers' clicks, attributed, in the Feedback panel.
                readers = [g for g in state["feedback"]["groups"] if g["surface"] == "simulator"]
                if any((g["current"] or {}).get("clicks") for g in readers):
                    seen["feedback"] = True
                if len(seen) == 4:
                    status, body = get(dashboard, "/api/users/1?k=5")
                    seen["explorer"] = json.loads(body)["recommendations"]
                    break
            time.sleep(1)
        output, _ = demo.communicate(timeout=400)
    finally:
        if demo.poll() is None:
            demo.kill()
    assert demo.returncode == 0, output[-4000:]
    assert seen.get("throughput", 0) > 0 and seen.get("model"), seen
    assert seen.get("pieces", 0) >= 1 and seen["explorer"]["items"], seen
    assert seen.get("feedback"), seen

    # The readers ran, and the summary has the CTR per strategy the feedback service counts.
    assert re.search(r"readers: als: \d+ lists, \d+ slots, \d+ clicks", output), output[-4000:]
    assert re.search(r"CTR v\d+ als \(simulator\): \d+ of \d+ slots clicked", output), output[
        -4000:
    ]

    assert "model version 1 active" in output, output[-4000:]
    assert output.count("==> generator:") == 5 and ", ok" in output, output[-4000:]
    loop = re.search(
        r'is recommended the generated article "(.+)" \((gen-\S+), score \S+\) by its'
        r" content, before anyone read it",
        output,
    )
    assert loop, output[-4000:]
    title, article = loop.groups()
    assert "stopping the services" in output

    # Exactly one reply per content request (the demo's 5: one per kind, news twice).
    replies = [
        EventCodec().decode(r.value).data
        for r in read_all(topics, "content-generated", 6, timeout_s=5)
    ]
    per_request = Counter(r.request_id for r in replies)
    assert len(per_request) == 5 and set(per_request.values()) == {1}, per_request
    assert all(r.status == "ok" for r in replies)
    news = {r.item_id for r in replies if r.kind == "news"}
    assert article in news and title != article  # shown by its name

    # Nobody interacted with it: of every interaction the demo published, none names it.
    published = record_count(topics, "interactions")
    interactions = read_all(topics, "interactions", published, timeout_s=30)
    assert len(interactions) == published > 0
    assert not [r for r in interactions if json.loads(r.value)["data"]["item_id"] == article]
