"""Which browser origins may call the collector, and the CORS headers they get (pure).

Only origins on the allow-list (``MARQUEE_COLLECTOR_CORS_ORIGINS``) get CORS headers, and a
request that carries any other ``Origin`` is refused outright: a beacon (``text/plain``)
needs no preflight, so the browser's own check would come too late to stop it.
Requests without ``Origin`` (apps, servers, curl) are not browsers' and pass.
"""

from __future__ import annotations

from collections.abc import Iterable

ALLOWED_METHODS = "POST, OPTIONS"
ALLOWED_HEADERS = "Authorization, Content-Type"
#: How long a browser may cache a preflight answer (seconds).
MAX_AGE = "600"


class CorsPolicy:
    def __init__(self, origins: Iterable[str]) -> None:
        self.origins = frozenset(o.rstrip("/").lower() for o in origins if o.strip())
        self.any = "*" in self.origins

    def allows(self, origin: str | None) -> bool:
        return origin is None or self.any or origin.rstrip("/").lower() in self.origins

    def headers(self, origin: str | None) -> dict[str, str]:
        """Headers for a normal answer to ``origin`` (none without an allowed Origin)."""
        if origin is None or not self.allows(origin):
            return {}
        # The origin itself, never "*": answers then vary by Origin, which caches must know.
        return {"Access-Control-Allow-Origin": origin, "Vary": "Origin"}

    def preflight(self, origin: str | None) -> dict[str, str]:
        return {
            **self.headers(origin),
            "Access-Control-Allow-Methods": ALLOWED_METHODS,
            "Access-Control-Allow-Headers": ALLOWED_HEADERS,
            "Access-Control-Max-Age": MAX_AGE,
        }
