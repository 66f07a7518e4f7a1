"""The collector's endpoints on the chassis' web server.

POST /v1/events      CloudEvents (structured, batched, or a beacon's text/plain), app key
OPTIONS /v1/events   CORS preflight for allowed origins
GET /v1/marquee.js   the browser script (public: it holds no secret)

Both are outside MARQUEE_HTTP_TOKEN: browsers and apps authenticate with their app key
instead. /livez, /readyz and /metrics come from the chassis, with its token rule.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from faust.web import Request, Response, View

from shared.service import Service

from .gateway import Gateway, Reply

SCRIPT = Path(__file__).resolve().parent / "static" / "marquee.js"
#: An hour: a deploy's new script reaches browsers within it, and the ETag revalidates.
SCRIPT_CACHE = "public, max-age=3600"


async def _read(request: Request, limit: int) -> bytes:
    """At most ``limit + 1`` bytes of the body: one more than allowed says it was too long."""
    chunks, size = [], 0
    while size <= limit:
        chunk = await request.content.read(limit + 1 - size)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


def install_views(service: Service, gateway: Gateway) -> None:
    app = service.app
    script = SCRIPT.read_bytes()
    etag = '"' + hashlib.sha256(script).hexdigest()[:16] + '"'
    events_latency = service.request_seconds.labels("/v1/events")

    def send(view: View, reply: Reply) -> Response:
        if reply.body is None:
            return view.bytes(b"", status=reply.status, headers=reply.headers)
        return view.json(reply.body, status=reply.status, headers=reply.headers)

    @app.page("/v1/events")
    class Events(View):
        async def post(self, request: Request) -> Response:
            with events_latency.time():
                reply = await gateway.events(
                    origin=request.headers.get("Origin"),
                    content_type=request.headers.get("Content-Type"),
                    authorization=request.headers.get("Authorization"),
                    query_key=request.query.get("key"),
                    content_length=request.content_length,
                    read=lambda limit: _read(request, limit),
                )
                return send(self, reply)

        async def options(self, request: Request) -> Response:
            return send(self, gateway.preflight(request.headers.get("Origin")))

    @app.page("/v1/marquee.js")
    class Script(View):
        async def get(self, request: Request) -> Response:
            headers = {
                "Cache-Control": SCRIPT_CACHE,
                "ETag": etag,
                "X-Content-Type-Options": "nosniff",
            }
            if request.headers.get("If-None-Match") == etag:
                return self.bytes(b"", status=304, headers=headers)
            return self.bytes(
                script,
                content_type="text/javascript",
                headers=headers | {"Vary": "Accept-Encoding"},
            )
