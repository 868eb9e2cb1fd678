"""Key sets: caching, single flight, cooldown, stale-if-error, rotation."""

from __future__ import annotations

import asyncio
import logging
import secrets
import socket

import httpx
import pytest

from tokenguard import InvalidToken, KeysUnavailable, TokenValidator
from tokenguard._keyset import KeySet
from tokenguard.testing import LocalIssuer

from .helpers import FakeClock, SwitchableIssuer

pytestmark = pytest.mark.anyio

VAULT = "https://vault.azure.net"


def make(
    issuer: LocalIssuer, clock: FakeClock, **options: object
) -> tuple[TokenValidator, SwitchableIssuer]:
    server = SwitchableIssuer(issuer)
    # The tokens are Key Vault managed-identity tokens: they carry no roles.
    options.setdefault("require_roles_or_scopes", False)
    return server.validator(VAULT, options, monotonic=clock), server


async def test_cold_start_shares_one_discovery_and_one_jwks_fetch(issuer: LocalIssuer) -> None:
    validator, server = make(issuer, FakeClock())
    tokens = [issuer.mint() for _ in range(5)]
    results = await asyncio.gather(*(validator.validate(tokens[i % 5]) for i in range(300)))
    assert all(r.kind == "managed_identity" for r in results)
    assert server.count("openid-configuration") == 1
    assert server.count("/keys") == 1


async def test_known_kid_never_waits_on_a_refresh(issuer: LocalIssuer) -> None:
    clock = FakeClock()
    validator, server = make(issuer, clock)
    await validator.warm_up()
    release = asyncio.Event()

    async def hang(request: httpx.Request) -> httpx.Response:
        await release.wait()
        return issuer.handler(request)

    server.override = hang
    clock.advance(3_590)  # inside the refresh-ahead window of the 1 h lifetime
    before = len(server.requests)
    identity = await asyncio.wait_for(validator.validate(issuer.mint()), timeout=5)
    assert identity.kind == "managed_identity"
    await asyncio.sleep(0)
    assert len(server.requests) == before + 1  # the background refresh started...
    assert await asyncio.wait_for(validator.validate(issuer.mint()), timeout=5)  # ...no wait
    release.set()
    await asyncio.sleep(0.05)
    status = validator.status()[0]
    assert status.age == 0  # refreshed...
    assert status.since_change == 3_590  # ...but the keys did not change


async def test_rotated_key_validates_on_its_first_request(issuer: LocalIssuer) -> None:
    clock = FakeClock()
    validator, server = make(issuer, clock)
    assert await validator.validate(issuer.mint())
    clock.advance(31)
    issuer.rotate()
    identity = await validator.validate(issuer.mint())
    assert identity.kind == "managed_identity"
    assert server.count("/keys") == 2


async def test_unknown_kid_flood_costs_one_fetch_per_cooldown(issuer: LocalIssuer) -> None:
    clock = FakeClock()
    validator, server = make(issuer, clock)
    await validator.warm_up()
    clock.advance(31)
    fetches = server.count("/keys")
    random_kid = [issuer.mint(headers={"kid": secrets.token_hex(8)}) for _ in range(3)]
    for round_ in range(3):
        results = await asyncio.gather(
            *(validator.validate(random_kid[i % 3]) for i in range(500)), return_exceptions=True
        )
        assert all(isinstance(r, InvalidToken) and r.reason == "unknown_key" for r in results)
        assert server.count("/keys") == fetches + 1, round_
    clock.advance(31)
    with pytest.raises(InvalidToken):
        await validator.validate(issuer.mint(headers={"kid": "fresh"}))
    assert server.count("/keys") == fetches + 2
    # a valid token is unaffected throughout
    assert await validator.validate(issuer.mint())


async def test_remembered_unknown_kid_is_refused_without_fetch(issuer: LocalIssuer) -> None:
    clock = FakeClock()
    validator, server = make(issuer, clock)
    await validator.warm_up()
    clock.advance(31)
    token = issuer.mint(headers={"kid": "ghost"})
    for _ in range(2):
        with pytest.raises(InvalidToken):
            await validator.validate(token)
    assert server.count("/keys") == 2
    # the kid appears: after the cooldown the next miss refreshes and finds it
    clock.advance(31)
    issuer.add_key(kid="ghost")
    assert await validator.validate(issuer.mint(kid="ghost"))


async def test_stale_if_error_then_unavailable(issuer: LocalIssuer) -> None:
    clock = FakeClock()
    validator, server = make(issuer, clock, max_stale=600.0)
    token = issuer.mint()
    await validator.validate(token)
    validator.cache.clear()
    server.override = lambda request: httpx.Response(503)
    clock.advance(3_700)  # past the 1 h lifetime
    assert await validator.validate(token)  # last good keys
    await asyncio.sleep(0.01)
    assert validator.status()[0].stale
    assert validator.status()[0].last_error == (
        f"JWKS {issuer.jwks_uri}: HTTP status 503 (Service Unavailable)"
    )
    clock.advance(700)  # past max_stale
    validator.cache.clear()
    with pytest.raises(KeysUnavailable) as info:
        await validator.validate(token)
    assert info.value.retry_after >= 1
    server.override = None
    clock.advance(10)  # past the error backoff
    assert await validator.validate(token)


async def test_no_keys_ever_gives_503_and_backs_off(issuer: LocalIssuer) -> None:
    clock = FakeClock()
    validator, server = make(issuer, clock)
    server.override = lambda request: httpx.Response(500)
    with pytest.raises(KeysUnavailable) as info:
        await validator.validate(issuer.mint())
    assert info.value.retry_after == 5
    calls = len(server.requests)
    clock.advance(2)
    with pytest.raises(KeysUnavailable) as info:
        await validator.validate(issuer.mint())
    assert info.value.retry_after == 3
    assert len(server.requests) == calls  # backing off: no new fetch
    with pytest.raises(KeysUnavailable):
        await validator.warm_up()
    assert not validator.is_ready()


@pytest.mark.parametrize(
    "response",
    [
        httpx.Response(200, text="<html>sorry</html>"),
        httpx.Response(200, text="{not json"),
        httpx.Response(200, json={"keys": {}}),
        httpx.Response(200, json={"keys": []}),
        httpx.Response(200, json=[1, 2]),
        httpx.Response(200, text='{"keys": NaN}'),
        httpx.Response(404),
    ],
    ids=["html", "invalid-json", "keys-object", "keys-empty", "array", "nan", "404"],
)
async def test_garbage_never_replaces_good_keys(
    issuer: LocalIssuer, response: httpx.Response, caplog: pytest.LogCaptureFixture
) -> None:
    clock = FakeClock()
    validator, server = make(issuer, clock)
    await validator.warm_up()
    server.override = lambda request: response
    clock.advance(3_700)
    token = issuer.mint()
    with caplog.at_level(logging.WARNING, logger="tokenguard"):
        assert await validator.validate(token)
        await asyncio.sleep(0.01)
    status = validator.status()[0]
    assert status.usable and status.stale and status.last_error
    assert status.kids == (issuer.signing_kid,)
    assert any("serving last good keys" in r.getMessage() for r in caplog.records)


async def test_etag_revalidation_keeps_keys(issuer: LocalIssuer) -> None:
    clock = FakeClock()
    validator, server = make(issuer, clock)
    await validator.warm_up()
    clock.advance(3_700)
    await validator.warm_up()
    last = server.requests[-1]
    assert last.headers["if-none-match"].startswith('"')
    assert validator.status()[0].kids == (issuer.signing_kid,)
    assert not validator.status()[0].stale


async def test_dropped_key_invalidates_its_cached_tokens(issuer: LocalIssuer) -> None:
    clock = FakeClock()
    validator, _server = make(issuer, clock)
    old_kid = issuer.signing_kid
    old_token = issuer.mint()
    assert await validator.validate(old_token)
    assert validator.cached(old_token) is not None
    issuer.rotate()
    issuer.retire(old_kid)
    clock.advance(3_700)
    await validator.warm_up()
    assert validator.cached(old_token) is None
    with pytest.raises(InvalidToken) as info:
        await validator.validate(old_token)
    assert info.value.reason == "unknown_key"
    assert await validator.validate(issuer.mint())


async def test_unchanged_keys_keep_cached_tokens(issuer: LocalIssuer) -> None:
    clock = FakeClock()
    validator, _server = make(issuer, clock)
    token = issuer.mint()
    await validator.validate(token)
    issuer.rotate()  # adds a key; the old one stays published
    clock.advance(3_700)
    await validator.warm_up()
    assert validator.cached(token) is not None


@pytest.mark.parametrize(
    ("headers", "expected_ttl"),
    [
        ({"cache-control": "public, max-age=1"}, 300),
        ({"cache-control": "max-age=999999"}, 86_400),
        ({"cache-control": "max-age=7200"}, 7_200),
        ({"cache-control": "no-store"}, 300),
        ({}, 3_600),
        ({"expires": "Thu, 01 Jan 1970 00:00:00 GMT"}, 300),
        ({"expires": "garbage"}, 300),
    ],
)
async def test_cache_lifetime_is_clamped(
    issuer: LocalIssuer, headers: dict[str, str], expected_ttl: float
) -> None:
    clock = FakeClock()
    validator, server = make(issuer, clock)

    def answer(request: httpx.Request) -> httpx.Response:
        response = issuer.handler(request)
        if request.url.path.endswith("/keys"):
            return httpx.Response(200, content=response.content, headers=headers)
        return response

    server.override = answer
    await validator.warm_up()
    clock.advance(expected_ttl - 1)
    assert not validator.status()[0].stale
    clock.advance(2)
    assert validator.status()[0].stale


async def test_discovery_naming_another_issuer_is_refused(issuer: LocalIssuer) -> None:
    clock = FakeClock()
    validator, server = make(issuer, clock)
    document = {**issuer.discovery_document(), "issuer": "https://evil.example/"}
    server.override = lambda request: httpx.Response(200, json=document)
    with pytest.raises(KeysUnavailable):
        await validator.warm_up()
    assert validator.status()[0].last_error == (
        f"discovery document {issuer.discovery_url} names issuer 'https://evil.example/'"
        f" but the Issuer expects {issuer.issuer!r}"
    )


@pytest.mark.parametrize(
    ("document", "error"),
    [
        ({"jwks_uri": "http://keys.example/keys"}, ": jwks_uri must use https"),
        ({"jwks_uri": None}, " names no jwks_uri"),
    ],
)
async def test_discovery_jwks_uri_is_checked(
    issuer: LocalIssuer, document: dict[str, object], error: str
) -> None:
    validator, server = make(issuer, FakeClock())
    body = {**issuer.discovery_document(), **document}
    server.override = lambda request: httpx.Response(200, json=body)
    with pytest.raises(KeysUnavailable):
        await validator.warm_up()
    last_error = validator.status()[0].last_error or ""
    assert last_error.startswith(f"discovery document {issuer.discovery_url}{error}")


async def test_failed_discovery_refresh_keeps_the_last_jwks_uri(issuer: LocalIssuer) -> None:
    clock = FakeClock()
    validator, server = make(issuer, clock)
    await validator.warm_up()

    def no_discovery(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("openid-configuration"):
            return httpx.Response(500)
        return issuer.handler(request)

    server.override = no_discovery
    clock.advance(3_700)
    await validator.warm_up()
    status = validator.status()[0]
    assert not status.stale and status.last_error is None


async def test_jwks_uri_configuration_skips_discovery(issuer: LocalIssuer) -> None:
    server = SwitchableIssuer(issuer)
    config = issuer.issuer_config(
        VAULT, discovery_url=None, jwks_uri=issuer.jwks_uri, require_roles_or_scopes=False
    )
    validator = TokenValidator([config], http_client=server.client())
    assert await validator.validate(issuer.mint())
    assert server.count("openid-configuration") == 0


async def test_unexpected_client_errors_are_contained(
    issuer: LocalIssuer, caplog: pytest.LogCaptureFixture
) -> None:
    validator, server = make(issuer, FakeClock())

    def boom(request: httpx.Request) -> httpx.Response:
        raise RuntimeError("bug in a transport")

    server.override = boom
    with caplog.at_level(logging.ERROR, logger="tokenguard"), pytest.raises(KeysUnavailable):
        await validator.validate(issuer.mint())
    assert validator.status()[0].last_error == "RuntimeError"


async def test_cancelled_request_does_not_cancel_the_shared_fetch(issuer: LocalIssuer) -> None:
    validator, server = make(issuer, FakeClock())
    release = asyncio.Event()

    async def slow(request: httpx.Request) -> httpx.Response:
        await release.wait()
        return issuer.handler(request)

    server.override = slow
    first = asyncio.ensure_future(validator.validate(issuer.mint()))
    second = asyncio.ensure_future(validator.validate(issuer.mint()))
    await asyncio.sleep(0.01)
    first.cancel()
    release.set()
    assert (await second).kind == "managed_identity"
    assert server.count("/keys") == 1


async def test_status_and_readiness(issuer: LocalIssuer) -> None:
    clock = FakeClock()
    validator, _ = make(issuer, clock)
    status = validator.status()[0]
    assert not status.loaded and status.age is None and status.since_change is None
    assert not validator.is_ready()
    await validator.warm_up()
    clock.advance(100)
    status = validator.status()[0]
    assert status.loaded and status.usable and status.key_count == 1
    assert status.age == status.since_change == 100
    assert validator.is_ready()
    assert validator.is_ready(max_stale=200)
    assert not validator.is_ready(max_stale=50)


# -- what a failure says ------------------------------------------------------------


def closed_port() -> int:
    """A 127.0.0.1 port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_refused_connection_is_logged_with_url_and_cause(
    issuer: LocalIssuer, caplog: pytest.LogCaptureFixture
) -> None:
    url = f"http://127.0.0.1:{closed_port()}/keys"  # a real socket: the OS refuses
    config = issuer.issuer_config(VAULT, discovery_url=None, jwks_uri=url)
    async with TokenValidator([config]) as validator:
        with (
            caplog.at_level(logging.ERROR, logger="tokenguard"),
            pytest.raises(KeysUnavailable) as info,
        ):
            await validator.warm_up()
    why = f"JWKS {url}: connection refused (ConnectError)"
    assert str(info.value) == f"keys of {issuer.issuer} unavailable: {why}"
    [record] = caplog.records
    assert record.getMessage() == (
        f"key fetch failed; no usable keys (issuer {issuer.issuer}): {why}"
    )
    assert (record.issuer, record.error) == (issuer.issuer, why)  # type: ignore[attr-defined]


async def test_discovery_naming_another_issuer_is_logged_expected_vs_advertised(
    issuer: LocalIssuer, caplog: pytest.LogCaptureFixture
) -> None:
    validator, server = make(issuer, FakeClock())
    advertised = "https://sts.windows.net/abc/"
    document = {**issuer.discovery_document(), "issuer": advertised}
    server.override = lambda request: httpx.Response(200, json=document)
    with caplog.at_level(logging.ERROR, logger="tokenguard"), pytest.raises(KeysUnavailable):
        await validator.warm_up()
    assert caplog.messages == [
        f"key fetch failed; no usable keys (issuer {issuer.issuer}): discovery document"
        f" {issuer.discovery_url} names issuer {advertised!r} but the Issuer expects"
        f" {issuer.issuer!r}"
    ]


async def test_discovery_without_an_issuer_says_so(issuer: LocalIssuer) -> None:
    validator, server = make(issuer, FakeClock())
    document = {**issuer.discovery_document(), "issuer": None}
    server.override = lambda request: httpx.Response(200, json=document)
    with pytest.raises(KeysUnavailable, match="names no issuer but the Issuer expects"):
        await validator.warm_up()


async def test_refresh_failures_name_the_url_while_serving_last_good_keys(
    issuer: LocalIssuer, caplog: pytest.LogCaptureFixture
) -> None:
    clock = FakeClock()
    validator, server = make(issuer, clock)
    await validator.warm_up()
    server.override = lambda request: httpx.Response(404)
    clock.advance(3_700)  # past the 1 h lifetime, within max_stale
    with caplog.at_level(logging.WARNING, logger="tokenguard"):
        await validator.warm_up()
    assert caplog.messages == [
        f"discovery refresh failed; using the last jwks_uri {issuer.jwks_uri}: discovery"
        f" document {issuer.discovery_url}: HTTP status 404 (Not Found)",
        f"key refresh failed; serving last good keys (issuer {issuer.issuer}): JWKS"
        f" {issuer.jwks_uri}: HTTP status 404 (Not Found)",
    ]


async def test_current_keys_jwks_uri_and_lifetime(issuer: LocalIssuer) -> None:
    validator, _ = make(issuer, FakeClock())
    keys = validator._states[0].keys
    assert isinstance(keys, KeySet)
    assert (keys.jwks_uri, keys.lifetime, keys.current_keys()) == (None, None, ())
    await validator.warm_up()
    assert keys.jwks_uri == issuer.jwks_uri
    assert keys.lifetime == 3600
    assert [k.kid for k in keys.current_keys()] == [issuer.signing_kid]
