"""The dashboard in a real browser: headless Chromium (Debian's package, driven by Playwright
for Python) loads the page while traffic flows and sees throughput, lag and a generated
article with values that update without a reload, and takes a screenshot
(`make screenshot` makes it the README's docs/dashboard.png).

Playwright's own browser downloads are never used: ``executable_path`` points at the
system Chromium that deploy/setup.sh installs.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from tests.integration.dashboard.test_api import (
    FAST,
    SERVE,
    Traffic,
    add_generated,
    add_model_version,
    group_rows,
    publish_dead_letter,
    wait_for_state,
)
from tests.integration.stack_helpers import ROOT, seed_movielens
from tests.integration.worker_helpers import service_worker

CHROMIUM = Path("/usr/bin/chromium")
#: The README's screenshot, rewritten only when asked (`make screenshot`), so a test run
#: leaves the working tree clean; otherwise the screenshot goes to the test's tmp_path.
README_SCREENSHOT = ROOT / "docs" / "dashboard.png"
UPDATE_README = os.environ.get("MARQUEE_UPDATE_SCREENSHOT") == "1"
ARTICLE = "Tram line approved: the council voted 7-2 to build the old-town route by 2029."

sync_api = pytest.importorskip("playwright.sync_api", reason="pip install -e '.[dev]'")


def number(text_: str) -> float:
    match = re.search(r"-?[\d,]+(\.\d+)?", text_)
    assert match, f"no number in {text_!r}"
    return float(match.group(0).replace(",", ""))


def seed_panels(engine, settings) -> None:
    """What the recommender and the generator would have written by now."""
    seed_movielens(engine, 3_000)
    add_model_version(engine, "retired", served=(0.18, 0.21), popular=(0.12, 0.11), fit=1.8)
    add_model_version(engine, "active", served=(0.21, 0.24), popular=(0.12, 0.11), fit=2.8)
    add_generated(
        engine,
        "req-tram",
        "Write a short news item about the tram line vote.",
        ARTICLE,
        {"queue_seconds": 0.2, "first_token_seconds": 0.35, "total_seconds": 2.1},
    )
    publish_dead_letter(
        settings, 1, 42, "not a JSON event object: EOF while parsing an object at line 1 column 21"
    )


@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium (make setup as root)")
def test_page_shows_live_throughput_lag_and_a_generated_article(topics, engine, tmp_path):
    screenshot = README_SCREENSHOT if UPDATE_README else tmp_path / "dashboard.png"
    seed_panels(engine, topics)
    with (
        # No feedback service here (port 9 never answers): the Feedback panel says so.
        service_worker(
            topics, tmp_path, SERVE, MARQUEE_DASHBOARD_FEEDBACK_URL="http://127.0.0.1:9", **FAST
        ) as (_, port),
        Traffic(topics, rate=80.0) as traffic,
    ):
        # Let a lag window fill (the statuses shown are judged ones) and some history build.
        wait_for_state(
            port,
            lambda s: (
                group_rows(s, traffic.group)[0]["complete"]
                and len(s["overview"]["throughput"]["interactions"]["series"]) >= 15
                and s["recommender"]["active"]
            ),
            what="a full lag window, 15 s of history and the model",
        )
        with sync_api.sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=str(CHROMIUM))
            try:
                page = browser.new_page(viewport={"width": 1400, "height": 1000})
                errors: list[str] = []
                page.on("pageerror", lambda exc: errors.append(str(exc)))
                page.goto(f"http://127.0.0.1:{port}/")
                page.evaluate("window.__loadedOnce = true")  # gone if the page reloads

                page.wait_for_function(
                    "Number(document.getElementById('kpi-interactions').textContent) > 0",
                    timeout=30_000,
                )
                row = page.locator(
                    f'[data-group="{traffic.group}"] tr[data-topic="interactions"][data-partition="0"]'
                )
                row.locator(".lag-messages").wait_for(timeout=30_000)
                page.wait_for_function(
                    f"""() => {{
                        const cell = document.querySelector(
                            '[data-group="{traffic.group}"] tr[data-partition="0"] .lag-messages');
                        return cell && Number(cell.textContent.replace(/,/g, '')) > 0;
                    }}""",
                    timeout=30_000,
                )
                first_rate = page.inner_text("#kpi-interactions")
                first_lag = row.locator(".lag-messages").inner_text()
                first_at = page.get_attribute("body", "data-generated-at")
                assert number(first_rate) > 0 and number(first_lag) > 0
                assert row.locator(".status").inner_text() in {"OK", "WARN"}
                unknown = page.locator(
                    f'[data-group="{traffic.group}"] tr[data-partition="5"] .status'
                )
                assert unknown.inner_text() == "UNKNOWN"

                # Live: new numbers arrive without a reload.
                page.wait_for_function(
                    f"""() => document.body.dataset.generatedAt !== "{first_at}"
                        && document.querySelector(
                            '[data-group="{traffic.group}"] tr[data-partition="0"] .lag-messages'
                        ).textContent !== "{first_lag}" """,
                    timeout=30_000,
                )
                assert page.evaluate("window.__loadedOnce") is True

                # Charts drawn by Chart.js (from node_modules), with data in them.
                assert page.evaluate("typeof Chart") == "function"
                datasets = page.evaluate(
                    "Chart.getChart('chart-throughput').data.datasets.map(d => d.label)"
                )
                assert "interactions" in datasets
                assert page.evaluate(
                    "Chart.getChart('chart-lag').data.datasets.some(d => d.data.length > 1)"
                )

                # Panels backed by Postgres and the DLQ.
                page.wait_for_selector(f"text={ARTICLE}", timeout=20_000)
                assert page.inner_text("#rec-active") == "v2"
                assert "not a JSON event object" in page.inner_text("#dead-letters")
                assert number(page.inner_text("#gen-tps")) > 0
                page.wait_for_selector("text=cannot reach the feedback service", timeout=20_000)
                assert page.evaluate("Chart.getChart('chart-lists') !== undefined")
                assert not errors, errors

                page.locator("#overview").scroll_into_view_if_needed()
                page.screenshot(path=str(screenshot), full_page=True)
            finally:
                browser.close()
    assert screenshot.stat().st_size > 10_000
