"""The recommender's HTTP API on the Faust web server (behind MARQUEE_HTTP_TOKEN if set).

GET /users/{user_id}/recommendations?k=10&exclude_seen=true&kind=article&max_per_tag=2&surface=home
GET /items/{item_id}/similar?k=10
GET /items/popular?k=10&window=24h&kind=article&max_per_tag=2
GET /models
"""

from __future__ import annotations

import asyncio
import re
from typing import TYPE_CHECKING

from faust.web import Request, Response, View

from shared.service import Service, params
from shared.service.params import BadParameter

from .experiments import ListRequest
from .model import UnknownItem
from .serving import described, popular_within

if TYPE_CHECKING:
    from .worker import RecommenderWorker

MAX_K = 200
#: The longest ``window`` /items/popular counts back over.
MAX_WINDOW_SECONDS = 366 * 86_400
#: Path ids match whatever the event schemas allow in an id, braces included.
USER = f"{{user_id:{params.PATH_ID}}}"
ITEM = f"{{item_id:{params.PATH_ID}}}"
#: As ``marquee.impression.v1`` names a surface.
SURFACE = re.compile(r"^[a-z0-9][a-z0-9_.:-]{0,63}$")


def _k(request: Request) -> int:
    return params.integer(request.query, "k", 10, low=1, high=MAX_K)


def _kind(request: Request) -> str | None:
    return params.text(request.query, "kind", max_length=64)


def _max_per_tag(request: Request, default: int) -> int:
    return params.integer(request.query, "max_per_tag", default, low=0, high=MAX_K)


def _surface(request: Request) -> str | None:
    surface = params.text(request.query, "surface", max_length=64)
    if surface is not None and not SURFACE.match(surface):
        raise BadParameter("surface must be lower-case letters, digits and _.:- (e.g. home)")
    return surface


def install_views(service: Service, worker: RecommenderWorker) -> None:
    """The API over ``worker``: the version it serves and its stores."""

    def loaded(view: View):
        current = worker.loaded
        if current is None:
            return None, view.json(
                {"error": "no active model yet: run `marquee train` once interactions are stored"},
                status=503,
            )
        return current, None

    @service.route(f"/users/{USER}/recommendations")
    class UserRecommendations(View):
        async def get(self, request: Request, user_id: str) -> Response:
            current, error = loaded(self)
            if error:
                return error
            try:
                params.identifier(user_id, "user id")
                k, kind = _k(request), _kind(request)
                exclude_seen = params.flag(request.query, "exclude_seen", True)
                cap = _max_per_tag(request, current.recommender.shaping.max_per_tag)
                surface = _surface(request)
            except BadParameter as exc:
                return self.json({"error": str(exc)}, status=400)
            served, impression_id = await worker.serve(
                current, ListRequest(user_id, k, exclude_seen, kind, cap), surface
            )
            body = {
                "user_id": user_id,
                "items": described(current.recommender, served.items),
                "strategy": served.strategy,
                "model_version": current.version.id,
                "impression_id": impression_id,
            }
            if served.experiment is not None:
                body.update(experiment=served.experiment, arm=served.arm)
            return self.json(body)

    @service.route("/items/popular")
    class Popular(View):
        async def get(self, request: Request) -> Response:
            try:
                k, kind = _k(request), _kind(request)
                window = params.duration(request.query, "window", max_seconds=MAX_WINDOW_SECONDS)
                cap = _max_per_tag(request, worker.settings.recommender_max_per_tag)
            except BadParameter as exc:
                return self.json({"error": str(exc)}, status=400)
            if window is not None:  # counted in Postgres: needs no model
                served = worker.loaded.recommender if worker.loaded else None
                items = await asyncio.to_thread(
                    popular_within, worker.interactions, served, window, k, kind, cap
                )
                return self.json({"items": described(served, items), "window_seconds": window})
            current, error = loaded(self)
            if error:
                return error
            rec = current.recommender
            items = rec.popular(k, kind=kind, max_per_tag=cap)
            return self.json({"items": described(rec, items)})

    @service.route(f"/items/{ITEM}/similar")
    class Similar(View):
        async def get(self, request: Request, item_id: str) -> Response:
            current, error = loaded(self)
            if error:
                return error
            try:
                params.identifier(item_id, "item id")
                items = current.recommender.similar_items(item_id, _k(request))
            except BadParameter as exc:
                return self.json({"error": str(exc)}, status=400)
            except UnknownItem:
                return self.json({"error": f"unknown item {item_id!r}"}, status=404)
            return self.json({"item_id": item_id, "items": described(current.recommender, items)})

    @service.route("/models")
    class Models(View):
        async def get(self, request: Request) -> Response:
            versions = await asyncio.to_thread(worker.models.versions)
            return self.json({"versions": [v.__dict__ for v in versions]})
