"""Who may read the dashboard (pure: no web framework here).

No token configured: everyone who can reach the port (it binds 127.0.0.1 by default).
With ``MARQUEE_HTTP_TOKEN``: a request from this machine (a loopback peer) needs nothing,
any other needs the token, as ``Authorization: Bearer <token>`` or as the session cookie
that ``POST /login`` sets for a browser. "Local" is decided on the TCP peer address only:
``X-Forwarded-For`` and friends are never trusted, since any client can send them. A
reverse proxy on this machine makes every request look local; set
``MARQUEE_DASHBOARD_TOKEN_FOR_LOCAL=true`` there.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress

from pydantic import SecretStr

COOKIE = "marquee_dashboard"
_SESSION = b"marquee-dashboard-session-v1"


def is_local(peer: str | None) -> bool:
    """True for a loopback peer (127.0.0.0/8, ::1, or IPv4-mapped loopback)."""
    if not peer:
        return False  # unknown peer: fail closed
    try:
        address = ipaddress.ip_address(peer.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_loopback


class Access:
    def __init__(self, token: SecretStr | None, *, token_for_local: bool = False) -> None:
        self._token = token.get_secret_value().encode() if token is not None else None
        self.token_for_local = token_for_local

    @property
    def required(self) -> bool:
        return self._token is not None

    def session_value(self) -> str:
        """The cookie a browser gets after logging in: derived from, never equal to, the token."""
        if self._token is None:
            raise ValueError("no token configured")
        return hmac.new(self._token, _SESSION, hashlib.sha256).hexdigest()

    def token_matches(self, given: str) -> bool:
        return self._token is not None and hmac.compare_digest(given.encode(), self._token)

    def allows(self, peer: str | None, authorization: str | None, cookie: str | None) -> bool:
        if self._token is None:
            return True
        if not self.token_for_local and is_local(peer):
            return True
        if authorization and authorization.startswith("Bearer "):
            if self.token_matches(authorization.removeprefix("Bearer ")):
                return True
        return bool(cookie) and hmac.compare_digest(cookie.encode(), self.session_value().encode())
