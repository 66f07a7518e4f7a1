"""Who may read the dashboard: local peers always, others only with the token."""

from __future__ import annotations

import pytest
from pydantic import SecretStr

from services.dashboard.access import Access, is_local

TOKEN = "s3cret-token-of-24-chars"


@pytest.mark.parametrize("peer", ["127.0.0.1", "127.8.9.10", "::1", "::ffff:127.0.0.1"])
def test_loopback_peers_are_local(peer):
    assert is_local(peer)


@pytest.mark.parametrize(
    "peer",
    ["198.18.0.2", "10.0.0.5", "192.168.1.1", "::ffff:198.18.0.2", "2001:db8::1", "", None, "x"],
)
def test_everything_else_is_not_local(peer):
    assert not is_local(peer)


def test_without_a_token_everyone_may_read():
    access = Access(None)
    assert not access.required
    assert access.allows("198.18.0.2", None, None)


def test_with_a_token_a_non_local_request_without_it_is_refused():
    access = Access(SecretStr(TOKEN))
    assert not access.allows("198.18.0.2", None, None)
    assert not access.allows("198.18.0.2", "Bearer wrong-token-wrong-token", None)
    assert not access.allows("198.18.0.2", TOKEN, None)  # the scheme is required
    assert not access.allows("198.18.0.2", None, "forged-cookie")
    assert not access.allows("198.18.0.2", None, TOKEN)  # the cookie is not the token itself


def test_with_a_token_a_non_local_request_with_it_is_allowed():
    access = Access(SecretStr(TOKEN))
    assert access.allows("198.18.0.2", f"Bearer {TOKEN}", None)
    assert access.allows("198.18.0.2", None, access.session_value())


def test_local_requests_need_no_token_unless_configured():
    assert Access(SecretStr(TOKEN)).allows("127.0.0.1", None, None)
    strict = Access(SecretStr(TOKEN), token_for_local=True)
    assert not strict.allows("127.0.0.1", None, None)
    assert strict.allows("127.0.0.1", f"Bearer {TOKEN}", None)


def test_the_session_cookie_is_derived_from_the_token():
    one, other = Access(SecretStr(TOKEN)), Access(SecretStr(TOKEN + "x"))
    assert one.session_value() != other.session_value()
    assert TOKEN not in one.session_value()
    assert one.token_matches(TOKEN) and not one.token_matches(TOKEN[:-1])
