"""App keys: random, hashed, found by their public id, compared in constant time."""

from __future__ import annotations

from services.collector.keys import App, KeyRing, key_id_of, key_sha256, new_key


def app_for(key: str, **changes) -> App:
    key_id = key_id_of(key)
    fields = dict(
        name="web",
        key_id=key_id,
        key_sha256=key_sha256(key),
        event_types=frozenset({"marquee.interaction.v1"}),
        source="urn:news:web",
    )
    return App(**fields | changes)


def test_keys_are_random_and_carry_their_public_id():
    key_id, key = new_key()
    other_id, other = new_key()
    assert key != other and key_id != other_id
    assert key.startswith(f"mqk_{key_id}_") and key_id_of(key) == key_id
    assert len(key) == len(f"mqk_{key_id}_") + 43  # 256 bits of url-safe base64


def test_only_the_hash_is_kept_and_it_is_sha256():
    key = new_key()[1]
    assert len(key_sha256(key)) == 32 and key.encode() not in key_sha256(key)
    assert key not in repr(app_for(key)) and "sha256" not in repr(app_for(key))


def test_the_ring_finds_the_right_key_and_nothing_else():
    key = new_key()[1]
    ring = KeyRing([app_for(key)])
    assert ring.authenticate(key).name == "web"
    same_id_wrong_secret = key[:-3] + ("AAA" if not key.endswith("AAA") else "BBB")
    assert ring.authenticate(same_id_wrong_secret) is None
    assert ring.authenticate(new_key()[1]) is None  # unknown id
    for junk in (None, "", "Bearer x", "mqk_zz_short", key + "x"):
        assert ring.authenticate(junk) is None


def test_revoked_apps_are_left_out():
    from datetime import UTC, datetime

    key = new_key()[1]
    ring = KeyRing([app_for(key, revoked_at=datetime.now(UTC))])
    assert len(ring) == 0 and ring.authenticate(key) is None
