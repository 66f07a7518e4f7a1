"""The page and JSON API through the chassis' real web server (aiohttp test client), with
in-memory sources. The client connects from 127.0.0.1; tests of non-local access swap the
peer address the server sees (the real network path is in tests/integration/dashboard/test_access.py)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from pydantic import SecretStr

from services.dashboard.access import COOKIE, Access
from services.dashboard.collector import Collector
from services.dashboard.errors import RecommenderUnavailable
from services.dashboard.http import CHART_JS, install_views, load_assets
from services.dashboard.settings import DashboardSettings
from shared.service import create_app

TOKEN = "dashboard-token-0123456789"


class FakePostgres:
    def history(self, user_id: str, limit: int = 20) -> dict:
        return {
            "total": 2,
            "events": [
                {"item_id": "50", "action": "like", "rating": 5.0, "title": "Star Wars (1977)"},
                {"item_id": "172", "action": "view", "rating": 3.0, "title": None},
            ],
        }


class FakeRecommender:
    def __init__(self) -> None:
        self.down = False

    async def recommendations(self, user_id: str, k: int) -> dict:
        if self.down:
            raise RecommenderUnavailable("cannot reach the recommender at http://127.0.0.1:1")
        items = [
            {"item_id": "181", "score": 0.9, "title": "Return of the Jedi (1983)", "kind": "film"},
            {"item_id": "7", "score": 0.5, "title": None, "kind": "item"},
        ][:k]
        return {"user_id": user_id, "items": items, "strategy": "als", "model_version": 3}


def serve(tmp_path: Path, *, token: str | None = None, peer: str | None = None, chart=True):
    """A test client for the dashboard's views; ``peer`` overrides the address it sees."""
    modules = tmp_path / "node_modules"
    if chart:
        (modules / CHART_JS).parent.mkdir(parents=True)
        (modules / CHART_JS).write_text("/* chart.js stand-in */")
    settings = DashboardSettings(_env_file=None, http_token=token)
    service = create_app("dashboard", settings)
    collector = Collector(settings, kafka=lambda: None, postgres=None)
    recommender = FakeRecommender()
    access = Access(settings.http_token)
    install_views(service, collector, FakePostgres(), recommender, access, load_assets(modules))
    service.app.web.init_server()
    app = service.app.web.web_app
    if peer is not None:

        @web.middleware
        async def from_elsewhere(request, handler):
            return await handler(request.clone(remote=peer))

        app.middlewares.append(from_elsewhere)
    return TestClient(TestServer(app)), recommender


def run(coro):
    return asyncio.run(coro)


def test_state_has_every_panel(tmp_path):
    async def go():
        client, _ = serve(tmp_path)
        async with client:
            response = await client.get("/api/state")
            assert response.status == 200
            assert response.headers["Content-Type"].startswith("application/json")
            assert response.headers["Cache-Control"] == "no-store"
            body = await response.json()
            assert set(body) >= {
                "generated_at",
                "refresh_seconds",
                "sources",
                "overview",
                "lag",
                "topics",
                "recommender",
                "generator",
            }
            assert set(body["overview"]) >= {"instances", "throughput", "dead_letters"}
            assert body["lag"] == {"window": 10, "groups": []}
            assert (await (await client.get("/api/lag")).json()) == {"groups": {}}

    run(go())


def test_page_and_assets(tmp_path):
    async def go():
        client, _ = serve(tmp_path)
        async with client:
            page = await client.get("/")
            assert page.status == 200 and "text/html" in page.headers["Content-Type"]
            assert '<script src="/static/chart.umd.min.js"' in await page.text()
            chart = await client.get("/static/chart.umd.min.js")
            assert chart.status == 200 and await chart.text() == "/* chart.js stand-in */"
            assert (await client.get("/static/app.js")).status == 200
            assert (await client.get("/static/..%2F..%2Fpyproject.toml")).status == 404

    run(go())


def test_missing_chart_library_is_a_404_not_a_crash(tmp_path, caplog):
    async def go():
        client, _ = serve(tmp_path, chart=False)
        async with client:
            assert (await client.get("/static/chart.umd.min.js")).status == 404
            assert (await client.get("/")).status == 200

    run(go())
    assert "npm ci --prefix services/dashboard" in caplog.text


def test_explorer_merges_history_and_served_recommendations(tmp_path):
    async def go():
        client, recommender = serve(tmp_path)
        async with client:
            body = await (await client.get("/api/users/42?k=2")).json()
            assert body["user_id"] == "42"
            assert body["history"]["total"] == 2
            assert body["history"]["events"][0]["title"] == "Star Wars (1977)"
            recs = body["recommendations"]
            assert recs["strategy"] == "als" and recs["model_version"] == 3
            assert recs["items"][0] == {
                "item_id": "181",
                "score": 0.9,
                "title": "Return of the Jedi (1983)",
                "kind": "film",
            }
            assert recs["items"][1] == {"item_id": "7", "score": 0.5, "title": None, "kind": "item"}

            recommender.down = True
            body = await (await client.get("/api/users/42")).json()
            assert body["history"]["total"] == 2
            assert "cannot reach the recommender" in body["recommendations"]["error"]

            for k in ("0", "51", "²", "1e3"):
                bad = await client.get(f"/api/users/42?k={k}")
                error = (await bad.json())["error"]
                assert bad.status == 400 and "k must be a whole number from 1 to 50" in error
            assert (await client.get("/api/users/" + "x" * 129)).status == 400
            assert (await client.get("/api/users/s1%00")).status == 400
            # Braces are valid in ids (the schema allows them): found, not a 404.
            braces = await client.get("/api/users/%7Bu%7D?k=2")
            assert braces.status == 200 and (await braces.json())["user_id"] == "{u}"

    run(go())


def test_without_a_token_non_local_requests_are_served(tmp_path):
    async def go():
        client, _ = serve(tmp_path, peer="198.18.0.2")
        async with client:
            assert (await client.get("/api/state")).status == 200

    run(go())


def test_with_a_token_local_requests_need_none(tmp_path):
    async def go():
        client, _ = serve(tmp_path, token=TOKEN)
        async with client:
            assert (await client.get("/api/state")).status == 200
            assert (await client.get("/")).status == 200

    run(go())


def test_with_a_token_a_non_local_request_without_it_is_refused(tmp_path):
    async def go():
        client, _ = serve(tmp_path, token=TOKEN, peer="198.18.0.2")
        async with client:
            refused = await client.get("/api/state")
            assert refused.status == 401
            assert "Bearer" in (await refused.json())["error"]
            page = await client.get("/", headers={"Accept": "text/html"})
            assert page.status == 401 and 'action="/login"' in await page.text()
            for path in ("/api/lag", "/api/users/42", "/static/app.js"):
                assert (await client.get(path)).status == 401, path
            # The probes stay open; /metrics follows the chassis (token for everyone).
            assert (await client.get("/livez")).status == 200
            assert (await client.get("/metrics")).status == 401

            allowed = await client.get("/api/state", headers={"Authorization": f"Bearer {TOKEN}"})
            assert allowed.status == 200

    run(go())


def test_a_browser_signs_in_with_the_token_and_gets_a_session_cookie(tmp_path):
    async def go():
        client, _ = serve(tmp_path, token=TOKEN, peer="198.18.0.2")
        async with client:
            wrong = await client.post("/login", data={"token": "nope"}, allow_redirects=False)
            assert wrong.status == 401 and "not the token" in await wrong.text()
            signed = await client.post("/login", data={"token": TOKEN}, allow_redirects=False)
            assert signed.status == 303 and signed.headers["Location"] == "/"
            cookie = signed.cookies[COOKIE]
            assert TOKEN not in cookie.value and cookie["httponly"]
            assert cookie["samesite"] == "Strict"
            # The client's cookie jar now sends it.
            assert (await client.get("/api/state")).status == 200
            assert (await client.get("/")).status == 200

    run(go())


@pytest.mark.parametrize("token", [None, TOKEN])
def test_state_body_is_the_snapshot_bytes(tmp_path, token):
    async def go():
        client, _ = serve(tmp_path, token=token)
        async with client:
            body = await (await client.get("/api/state")).read()
            assert json.loads(body)["history_seconds"] == 300.0

    run(go())


def test_settings_guard_the_history_length():
    with pytest.raises(ValueError, match="at least two samples"):
        DashboardSettings(_env_file=None, dashboard_sample_seconds=10, dashboard_history_seconds=15)
    settings = DashboardSettings(_env_file=None, http_token=SecretStr(TOKEN))
    assert settings.http_port == 6068 and settings.http_host == "127.0.0.1"
    assert settings.recommender_token().get_secret_value() == TOKEN
