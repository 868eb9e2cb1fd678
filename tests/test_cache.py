"""The verified-token cache: exact matches only, second-chance eviction, expiry and
dropped keys."""

from __future__ import annotations

import pytest

from tokenguard._cache import TokenCache
from tokenguard._identity import identity_from_claims
from tokenguard._keys import VerificationKey, load_jwks
from tokenguard.testing import LocalIssuer

TAIL = b"-" * 40  # the same last 32 bytes for every token below


@pytest.fixture(scope="module")
def key(session_issuer: LocalIssuer) -> VerificationKey:
    keys = load_jwks(session_issuer.jwks(), frozenset({"RS256"}), 10)
    return keys[session_issuer.signing_kid]


def put(cache: TokenCache, token: bytes, key: VerificationKey, not_after: float = 100.0) -> None:
    identity = identity_from_claims({"iss": "i", "exp": 1, "oid": token.decode()}, audience="a")
    cache.put(b"Bearer " + token, identity, key, not_after, 0.0)


def oid(cache: TokenCache, token: bytes, now: float = 1.0) -> str | None:
    entry = cache.get(token, now)
    return None if entry is None else entry.identity.object_id


def test_a_hit_needs_the_exact_token(key: VerificationKey) -> None:
    cache = TokenCache(10)
    put(cache, b"a" + TAIL, key)
    assert oid(cache, b"a" + TAIL) == "a" + TAIL.decode()
    assert oid(cache, b"b" + TAIL) is None  # same index, other token
    assert oid(cache, b"a" + TAIL[:-1]) is None
    assert (cache.hits, cache.misses) == (1, 2)


def test_replacing_an_entry_makes_it_the_most_recent(key: VerificationKey) -> None:
    cache = TokenCache(2)
    first, second, third = b"1" * 40, b"2" * 40, b"3" * 40
    put(cache, first, key)
    put(cache, second, key)
    put(cache, first, key)  # same index again: replaced, now the most recent
    put(cache, third, key)
    assert oid(cache, second) is None
    assert oid(cache, first)


def test_expiry_not_before_and_dead_keys(key: VerificationKey, session_issuer: LocalIssuer) -> None:
    cache = TokenCache(10)
    token = b"t" * 40
    identity = identity_from_claims({"iss": "i", "exp": 1}, audience="a")
    cache.put(b"Bearer " + token, identity, key, 50.0, 10.0)
    assert cache.get(token, 5.0) is None  # not yet
    assert cache.get(token, 10.0) is not None
    assert cache.get(token, 50.0) is None  # expired, and dropped
    assert len(cache) == 0
    other = load_jwks(session_issuer.jwks(), frozenset({"RS256"}), 10)[session_issuer.signing_kid]
    cache.put(b"Bearer " + token, identity, other, 50.0, 0.0)
    put(cache, b"k" * 40, key)
    cache.discard_keys({other})  # what a key set does when a refresh drops the key
    assert cache.get(token, 1.0) is None
    assert len(cache) == 1 and oid(cache, b"k" * 40)
    other.alive = False
    cache.put(b"Bearer " + token, identity, other, 50.0, 0.0)  # verified just before the drop
    assert len(cache) == 1


def test_a_hit_buys_a_second_chance(key: VerificationKey) -> None:
    cache = TokenCache(3)
    one, two, three, four, five = (bytes([c]) * 40 for c in b"12345")
    for token in (one, two, three):
        put(cache, token, key)
    assert oid(cache, one) and oid(cache, two)
    put(cache, four, key)  # one and two were hit: three, the oldest unhit, goes
    assert [oid(cache, t) is not None for t in (one, two, three, four)] == [1, 1, 0, 1]
    put(cache, five, key)  # every entry was hit since: one round, then the oldest goes
    assert len(cache) == 3
    assert oid(cache, one) is None
    assert oid(cache, five)


def test_hits_are_counted_across_evictions_and_clear(key: VerificationKey) -> None:
    cache = TokenCache(1)
    put(cache, b"a" * 40, key)
    assert oid(cache, b"a" * 40) and oid(cache, b"a" * 40)
    put(cache, b"b" * 40, key)  # a goes round once (its hits are kept), then goes
    assert oid(cache, b"b" * 40)
    assert cache.hits == 3
    cache.clear()
    assert (cache.hits, len(cache)) == (3, 0)


def test_request_auth_is_built_once(key: VerificationKey) -> None:
    cache = TokenCache(10)
    token = b"r" * 40
    identity = identity_from_claims(
        {"iss": "i", "exp": 1, "roles": ["R"], "scp": "s"}, audience="a"
    )
    cache.put(b"Bearer " + token, identity, key, 50.0, 0.0)
    entry = cache.get(token, 1.0)
    assert entry is not None
    user, credentials = entry.request_auth()
    assert user.identity is identity
    assert sorted(credentials.scopes) == ["R", "s"]
    assert entry.request_auth() == (user, credentials)  # the same objects each time


def test_shared_credentials_cannot_be_changed_by_a_request(key: VerificationKey) -> None:
    cache = TokenCache(10)
    token = b"w" * 40
    identity = identity_from_claims({"iss": "i", "exp": 1, "roles": ["R"]}, audience="a")
    cache.put(b"Bearer " + token, identity, key, 50.0, 0.0)
    entry = cache.get(token, 1.0)
    assert entry is not None
    _, credentials = entry.request_auth()
    credentials.scopes.append("Admin")  # a copy: the next request does not see it
    assert credentials.scopes == ["R"]
    with pytest.raises(AttributeError):
        credentials.scopes = ["Admin"]  # type: ignore[misc]
    assert entry.request_auth()[1].scopes == ["R"]


def test_size_zero_disables_and_negative_is_refused(key: VerificationKey) -> None:
    cache = TokenCache(0)
    put(cache, b"z" * 40, key)
    assert len(cache) == 0
    with pytest.raises(ValueError):
        TokenCache(-1)
    cache = TokenCache(5)
    put(cache, b"c" * 40, key)
    cache.clear()
    assert len(cache) == 0
