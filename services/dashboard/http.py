"""The dashboard's web page and JSON API on the service chassis' web server.

GET  /                     the page (static HTML + JS; it polls /api/state)
GET  /static/{name}        its script, stylesheet and the charting library (from node_modules)
GET  /api/state            every panel's current numbers and recent history (one snapshot)
GET  /api/lag              per-partition lag history of every group
GET  /api/users/{user_id}  the explorer: recent history and recommendations with scores
GET|POST /login            a browser's way to present the token (sets a session cookie)

Everything but /login answers only requests that :class:`~.access.Access` allows.
/livez, /readyz and /metrics come from the chassis, with its token rule.
"""

from __future__ import annotations

import asyncio
import html
import logging
from dataclasses import dataclass
from pathlib import Path

from faust.web import Request, Response, View

from shared.service import Service, params

from .access import COOKIE, Access
from .collector import Collector
from .errors import RecommenderUnavailable
from .postgres_source import PostgresSource
from .recommender_client import RecommenderClient

log = logging.getLogger(__name__)

STATIC = Path(__file__).resolve().parent / "static"
#: The charting library, as npm installs it (never copied into the repository).
CHART_JS = Path("chart.js") / "dist" / "chart.umd.min.js"
MAX_K = 50
#: Like the events' ids: 1-128 characters, no control characters.
NO_STORE = {"Cache-Control": "no-store"}


@dataclass(frozen=True)
class Asset:
    body: bytes
    content_type: str


def load_assets(node_modules: Path) -> dict[str, Asset]:
    """The page's files, read once. A missing charting library is logged, not fatal: the
    page then shows its numbers without charts and says how to install it."""
    assets = {
        "index.html": Asset((STATIC / "index.html").read_bytes(), "text/html"),
        "app.js": Asset((STATIC / "app.js").read_bytes(), "text/javascript"),
        "app.css": Asset((STATIC / "app.css").read_bytes(), "text/css"),
    }
    chart = node_modules / CHART_JS
    if chart.is_file():
        assets["chart.umd.min.js"] = Asset(chart.read_bytes(), "text/javascript")
    else:
        log.warning(
            "charting library not found at %s: run `npm ci --prefix services/dashboard` "
            "(make setup does); the page shows numbers without charts",
            chart,
        )
    return assets


LOGIN_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Marquee dashboard: sign in</title>
<link rel="stylesheet" href="/static/app.css"></head>
<body class="login"><form method="post" action="/login">
<h1>Marquee dashboard</h1>
<p>Requests from other machines need the dashboard's token (MARQUEE_HTTP_TOKEN).</p>
<p class="error">{error}</p>
<label>Token <input type="password" name="token" autocomplete="current-password" autofocus></label>
<button type="submit">Sign in</button></form></body></html>
"""


def _login_page(error: str = "") -> str:
    return LOGIN_PAGE.format(error=html.escape(error))


def install_views(
    service: Service,
    collector: Collector,
    postgres: PostgresSource,
    recommender: RecommenderClient,
    access: Access,
    assets: dict[str, Asset],
) -> None:
    app = service.app

    class Guarded(View):
        async def dispatch(self, request: Request) -> Response:
            allowed = access.allows(
                request.remote, request.headers.get("Authorization"), request.cookies.get(COOKIE)
            )
            if allowed:
                return await super().dispatch(request)
            if "text/html" in request.headers.get("Accept", ""):
                return self.html(_login_page(), status=401)
            return self.json(
                {"error": "unauthorized: send Authorization: Bearer <MARQUEE_HTTP_TOKEN>"},
                status=401,
            )

    def asset(view: View, name: str) -> Response:
        found = assets.get(name)
        if found is None:
            return view.json({"error": f"no such file: {name}"}, status=404)
        return view.bytes(found.body, content_type=found.content_type, headers=NO_STORE)

    @app.page("/")
    class Page(Guarded):
        async def get(self, request: Request) -> Response:
            return asset(self, "index.html")

    @app.page("/static/{name}")
    class Static(Guarded):
        async def get(self, request: Request, name: str) -> Response:
            return asset(self, name)

    @app.page("/api/state")
    class State(Guarded):
        async def get(self, request: Request) -> Response:
            body = collector.snapshot.body
            return self.bytes(body, content_type="application/json", headers=NO_STORE)

    @app.page("/api/lag")
    class Lag(Guarded):
        async def get(self, request: Request) -> Response:
            body = collector.snapshot.lag_body()
            return self.bytes(body, content_type="application/json", headers=NO_STORE)

    @app.page(f"/api/users/{{user_id:{params.PATH_ID}}}")
    class Explorer(Guarded):
        async def get(self, request: Request, user_id: str) -> Response:
            try:
                params.identifier(user_id, "user id")
                k = params.integer(request.query, "k", 10, low=1, high=MAX_K)
            except params.BadParameter as exc:
                return self.json({"error": str(exc)}, status=400)
            history, recommended = await asyncio.gather(
                asyncio.to_thread(postgres.history, user_id),
                _recommendations(recommender, user_id, k),
                return_exceptions=True,
            )
            body = {"user_id": user_id}
            if isinstance(history, BaseException):
                log.warning("explorer: reading the history of a user failed: %s", history)
                body["history"] = {"error": f"{type(history).__name__}: {history}"[:300]}
            else:
                body["history"] = history
            if isinstance(recommended, RecommenderUnavailable):
                body["recommendations"] = {"error": str(recommended)}
            elif isinstance(recommended, BaseException):
                raise recommended
            else:
                body["recommendations"] = recommended
            return self.json(body, headers=NO_STORE)

    @app.page("/login")
    class Login(View):
        async def get(self, request: Request) -> Response:
            if not access.required:
                return self.text("", status=303, headers={"Location": "/"})
            return self.html(_login_page())

        async def post(self, request: Request) -> Response:
            if not access.required:
                return self.text("", status=303, headers={"Location": "/"})
            form = await request.post()
            if not access.token_matches(str(form.get("token", ""))):
                log.warning("dashboard sign-in with a wrong token from %s", request.remote)
                return self.html(_login_page("That is not the token."), status=401)
            cookie = f"{COOKIE}={access.session_value()}; Path=/; HttpOnly; SameSite=Strict"
            return self.text("", status=303, headers={"Location": "/", "Set-Cookie": cookie})


async def _recommendations(client: RecommenderClient, user_id: str, k: int) -> dict:
    """The recommender's answer as it served it: each item's title and kind come with it
    (the catalog the served model holds), so the explorer names what apps are shown."""
    served = await client.recommendations(user_id, k)
    return {
        "strategy": served.get("strategy"),
        "model_version": served.get("model_version"),
        "items": served.get("items") or [],
    }
