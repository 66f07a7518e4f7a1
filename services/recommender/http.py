"""The recommender's HTTP API on the Faust web server (behind MARQUEE_HTTP_TOKEN if set).

GET /users/{user_id}/recommendations?k=10&exclude_seen=true&kind=article
GET /items/{item_id}/similar?k=10
GET /items/popular?k=10&window=24h&kind=article
GET /models
"""

from __future__ import annotations

import asyncio

from faust.web import Request, Response, View

from shared.service import Service

from .model import UnknownItem
from .model_store import ModelStore
from .serving import popular_within, recommend_async

MAX_K = 200
#: ``window`` units for /items/popular.
UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86_400}


class BadRequest(ValueError):
    pass


def _k(request: Request) -> int:
    raw = request.query.get("k", "10")
    try:
        k = int(raw)
    except ValueError:
        raise BadRequest(f"k must be an integer, got {raw!r}") from None
    if not 1 <= k <= MAX_K:
        raise BadRequest(f"k must be between 1 and {MAX_K}, got {k}")
    return k


def _flag(request: Request, name: str, default: bool) -> bool:
    raw = request.query.get(name)
    if raw is None:
        return default
    if raw.lower() in ("1", "true", "yes"):
        return True
    if raw.lower() in ("0", "false", "no"):
        return False
    raise BadRequest(f"{name} must be true or false, got {raw!r}")


def _kind(request: Request) -> str | None:
    kind = request.query.get("kind")
    if kind is not None and not 1 <= len(kind) <= 64:
        raise BadRequest("kind must be 1 to 64 characters")
    return kind


def _window_seconds(request: Request) -> float | None:
    raw = request.query.get("window")
    if raw is None:
        return None
    number, unit = raw[:-1], raw[-1:]
    if unit not in UNITS or not number.isdigit() or int(number) == 0:
        raise BadRequest(f"window must look like 90s, 30m, 24h or 7d, got {raw!r}")
    return int(number) * UNITS[unit]


def _items(scored) -> list[dict]:
    return [{"item_id": item, "score": score} for item, score in scored]


def install_views(service: Service, serving: dict, store: ModelStore) -> None:
    def loaded(view: View):
        current = serving["loaded"]
        if current is None:
            return None, view.json(
                {"error": "no active model yet: run `marquee train` once interactions are stored"},
                status=503,
            )
        return current, None

    @service.route("/users/{user_id}/recommendations")
    class UserRecommendations(View):
        async def get(self, request: Request, user_id: str) -> Response:
            current, error = loaded(self)
            if error:
                return error
            try:
                k, exclude_seen = _k(request), _flag(request, "exclude_seen", True)
                kind = _kind(request)
            except BadRequest as exc:
                return self.json({"error": str(exc)}, status=400)
            items, strategy = await recommend_async(
                current, store.engine, user_id, k, exclude_seen, kind
            )
            return self.json(
                {
                    "user_id": user_id,
                    "items": _items(items),
                    "strategy": strategy,
                    "model_version": current.version.id,
                }
            )

    @service.route("/items/popular")
    class Popular(View):
        async def get(self, request: Request) -> Response:
            try:
                k, kind, window = _k(request), _kind(request), _window_seconds(request)
            except BadRequest as exc:
                return self.json({"error": str(exc)}, status=400)
            if window is not None:  # counted in Postgres: needs no model
                items = await asyncio.to_thread(popular_within, store.engine, window, k, kind)
                return self.json({"items": _items(items), "window_seconds": window})
            current, error = loaded(self)
            if error:
                return error
            return self.json({"items": _items(current.recommender.popular(k, kind=kind))})

    @service.route("/items/{item_id}/similar")
    class Similar(View):
        async def get(self, request: Request, item_id: str) -> Response:
            current, error = loaded(self)
            if error:
                return error
            try:
                k = _k(request)
                items = current.recommender.similar_items(item_id, k)
            except BadRequest as exc:
                return self.json({"error": str(exc)}, status=400)
            except UnknownItem:
                return self.json({"error": f"unknown item {item_id!r}"}, status=404)
            return self.json({"item_id": item_id, "items": _items(items)})

    @service.route("/models")
    class Models(View):
        async def get(self, request: Request) -> Response:
            versions = await asyncio.to_thread(store.versions)
            return self.json({"versions": [v.__dict__ for v in versions]})
