"""The collector's request policy: origin, key, limits, per-event verdicts, publishing.

One class, no web framework: the HTTP view hands it the request's parts and sends back
what it returns, so every rule is unit-tested with a fake publisher. The order is cheap
first: origin (403), media type (415), key (401), size (413), body (400), batch count (413),
rate (429), then each event (403 / 400 / 202, or 503 if the broker did not confirm).
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable, Iterable
from concurrent.futures import Executor
from dataclasses import dataclass, field

from shared.events import EventCodec
from shared.events.envelope import Envelope
from shared.kafka.publisher import BatchReport

from . import body as bodies
from .cors import CorsPolicy
from .errors import RequestRefused
from .intake import Verdict, admit, answer, merge
from .keys import App, KeyRing
from .ratelimit import RateLimiter, retry_after

log = logging.getLogger(__name__)

PublishMany = Callable[[list[Envelope]], BatchReport]
NO_STORE = {"Cache-Control": "no-store"}
UNAUTHORIZED = (
    "unauthorized: send the app's key as Authorization: Bearer <key> "
    "(beacons with a text/plain body: ?key=<key>); `marquee apps add` makes one"
)


@dataclass(frozen=True)
class Reply:
    status: int
    body: dict | None
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Limits:
    max_events: int
    max_bytes: int
    confirm_timeout: float


class Gateway:
    def __init__(
        self,
        *,
        keys: KeyRing,
        cors: CorsPolicy,
        limiter: RateLimiter,
        codec: EventCodec,
        limits: Limits,
        executor: Executor | None = None,
        on_verdicts: Callable[[int, Iterable[Verdict]], None] = lambda status, verdicts: None,
    ) -> None:
        self.keys, self.cors, self.limiter, self.codec = keys, cors, limiter, codec
        self.limits, self.executor, self.on_verdicts = limits, executor, on_verdicts
        #: Set once the producer is connected (app.py); until then events answer 503.
        self.publish_many: PublishMany | None = None

    def preflight(self, origin: str | None) -> Reply:
        if origin is None or not self.cors.allows(origin):
            return Reply(403, {"error": f"origin {str(origin)[:100]!r} is not allowed"})
        return Reply(204, None, self.cors.preflight(origin))

    async def events(
        self,
        *,
        origin: str | None,
        content_type: str | None,
        authorization: str | None,
        query_key: str | None,
        content_length: int | None,
        read: Callable[[int], Awaitable[bytes]],
    ) -> Reply:
        """Answer ``POST /v1/events``; ``read(limit)`` returns at most ``limit`` bytes of body
        (``limit + 1`` bytes tell it was longer)."""
        if not self.cors.allows(origin):
            return Reply(403, {"error": f"origin {origin[:100]!r} is not allowed"}, NO_STORE)
        headers = {**self.cors.headers(origin), **NO_STORE}
        try:
            reply = await self._events(content_type, authorization, query_key, content_length, read)
        except RequestRefused as refused:
            reply = Reply(refused.status, {"error": refused.reason}, refused.headers)
        return Reply(reply.status, reply.body, {**reply.headers, **headers})

    async def _events(self, content_type, authorization, query_key, content_length, read) -> Reply:
        media = bodies.media_type(content_type)
        app = self._authenticate(media, authorization, query_key)
        limit = self.limits.max_bytes
        if content_length is not None and content_length > limit:
            raise RequestRefused(413, _too_big(content_length, limit))
        raw = await read(limit)
        if len(raw) > limit:
            raise RequestRefused(413, _too_big(len(raw), limit))
        body = bodies.parse(raw, media, max_events=self.limits.max_events, codec=self.codec)
        wait = self.limiter.take(app.name, len(body.events))
        if wait > 0:
            raise RequestRefused(
                429,
                f"app {app.name} is over its rate limit ({self.limiter.rate:g} events/s, "
                f"burst {self.limiter.burst:g}): retry after the Retry-After seconds",
                {"Retry-After": retry_after(wait)},
            )
        verdicts, events, indexes = admit(app, body, self.codec)
        if events:
            report = await self._publish(events)
            final = merge(verdicts, indexes, report)
        else:
            final = [v for v in verdicts if v is not None]
        status, payload = answer(final, body.batched)
        self.on_verdicts(status, final)
        return Reply(status, payload, {"Retry-After": "1"} if status == 503 else {})

    def _authenticate(self, media: str, authorization: str | None, query_key: str | None) -> App:
        if query_key is not None and media != bodies.BEACON:
            raise RequestRefused(
                401, "?key= is only for beacons (a text/plain body); send Authorization: Bearer"
            )
        key = query_key
        if authorization is not None:
            scheme, _, given = authorization.partition(" ")
            key = given.strip() if scheme.lower() == "bearer" else None
        app = self.keys.authenticate(key)
        if app is None:
            # Never the key itself in a log: it is a credential.
            raise RequestRefused(401, UNAUTHORIZED, {"WWW-Authenticate": "Bearer"})
        return app

    async def _publish(self, events: list[Envelope]) -> BatchReport:
        if self.publish_many is None:
            raise RequestRefused(
                503, "the collector is still connecting to Kafka", {"Retry-After": "2"}
            )
        call = functools.partial(self.publish_many, events)
        # kafka-python waits for confirmations by blocking: a thread does, the loop serves on.
        return await asyncio.get_running_loop().run_in_executor(self.executor, call)


def _too_big(size: int, limit: int) -> str:
    return (
        f"the body is {size:,} bytes or more; the limit is {limit:,} "
        "(MARQUEE_COLLECTOR_MAX_REQUEST_BYTES): send smaller batches"
    )
