"""Issuer faults on a real socket: last good keys, no waiting, 503 only when nothing is left.

Each test serves a local issuer's discovery document and JWKS from 127.0.0.1, switches
the server into a fault, and checks what valid requests get while it lasts (through
``TokenValidator`` and through the middleware), that requests on a known key never wait
on the fetch, that 503 + ``Retry-After`` comes only when no usable keys remain, and
that service resumes by itself once the issuer heals.

Cache time is an injected monotonic clock; only the fetch deadline runs on real time,
so it is kept short (0.3 s) except where a test needs a fetch to stay in flight.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import httpx
import pytest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.routing import Route

from tokenguard import (
    InvalidToken,
    KeySetStatus,
    KeysUnavailable,
    TokenGuardMiddleware,
    TokenValidator,
)
from tokenguard._keyset import KeySet
from tokenguard.testing import LocalIssuer

from ..helpers import FakeClock, until, whoami
from .server import FaultyIssuer, Mode, Sink, make_tls

pytestmark = pytest.mark.anyio

VAULT = "https://vault.azure.net"
TTL = 60.0  # the issuer's Cache-Control max-age
MAX_STALE = 600.0
BACKOFF = 5.0
COOLDOWN = 10.0
SHORT_DEADLINE = 0.3


@dataclass
class Rig:
    """A faulty issuer, a validator on an injected monotonic clock, and a protected app."""

    issuer: LocalIssuer
    server: FaultyIssuer
    clock: FakeClock
    validator: TokenValidator
    http: httpx.AsyncClient

    async def get(self, token: str | None = None) -> httpx.Response:
        """A request to the protected app with a fresh valid token (or ``token``)."""
        token = token or self.issuer.mint(VAULT)
        return await self.http.get("/", headers={"authorization": f"Bearer {token}"})

    def status(self) -> KeySetStatus:
        return self.validator.status()[0]


def with_kid(token: str, kid: str) -> str:
    """The token with its header's kid replaced (the signature no longer matters)."""
    _, payload, signature = token.split(".")
    header = json.dumps({"typ": "JWT", "alg": "ES256", "kid": kid}).encode()
    return ".".join([base64.urlsafe_b64encode(header).rstrip(b"=").decode(), payload, signature])


async def settled(validator: TokenValidator) -> None:
    """Wait (on I/O, not on a clock) until no key fetch is in flight.

    Reaches into the key set for its fetch in flight: there is no public hook for
    "the background refresh has finished", and polling status would race with it.
    """
    for state in validator._states:
        assert isinstance(state.keys, KeySet)
        flight = state.keys._flight
        if flight is not None:
            await flight.wait()


@asynccontextmanager
async def rig(
    *, deadline: float = SHORT_DEADLINE, tls: bool = False, warm: bool = True
) -> AsyncIterator[Rig]:
    # EC keys: generating RSA keys would dominate the run time, and faults do not
    # depend on the key type.
    issuer = LocalIssuer(jwks_max_age=int(TTL), key_type="EC")
    pair = make_tls() if tls else None
    async with FaultyIssuer(issuer, tls=pair.server if pair else None) as server:
        clock = FakeClock(1_000.0)
        config = issuer.issuer_config(
            VAULT,
            min_cache_ttl=1.0,
            refresh_cooldown=COOLDOWN,
            max_stale=MAX_STALE,
            fetch_timeout=deadline,
            error_backoff=BACKOFF,
            # Key Vault managed-identity tokens: no roles; the faults are about keys.
            require_roles_or_scopes=False,
        )
        # With TLS the test must hand in a client that trusts its certificate;
        # otherwise the validator builds its own, as in production.
        client = httpx.AsyncClient(verify=pair.client) if pair else None
        validator = TokenValidator([config], http_client=client, monotonic=clock)
        app = Starlette(
            routes=[Route("/", whoami)],
            middleware=[Middleware(TokenGuardMiddleware, validator=validator, warm_up=False)],
        )
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://app") as http:
            if warm:
                await validator.warm_up()
            try:
                yield Rig(issuer, server, clock, validator, http)
            finally:
                await server.stop()  # ends hanging fetches at once
                await settled(validator)
                await validator.aclose()
                if client is not None:
                    await client.aclose()


async def enter_fault(r: Rig, mode: Mode | None, sink: Sink | None = None) -> None:
    """Switch the issuer into a fault; ``None`` means down (port closed)."""
    if mode is None:
        await r.server.stop()
        return
    if sink is not None:
        r.server.redirect_to = f"http://localhost:{sink.port}/elsewhere"
    r.server.mode = mode


async def heal(r: Rig, mode: Mode | None) -> None:
    if mode is None:
        await r.server.start()
    r.server.mode = "healthy"


FAULTS: list[tuple[Mode | None, str]] = [
    (None, "ConnectError"),
    ("hang", "no complete answer within"),
    ("drip", "no complete answer within"),
    ("huge", "larger than"),
    ("huge-chunked", "larger than"),
    ("html", "not JSON"),
    ("bad-json", "not JSON"),
    ("keys-object", "'keys' is not a list"),
    ("status-500", "status 500"),
    ("status-503", "status 503"),
    ("redirect-other-host", "another origin"),
]


@pytest.mark.parametrize(("mode", "error"), FAULTS, ids=[m or "down" for m, _ in FAULTS])
async def test_fault_serves_last_good_keys_then_503_then_recovers(
    mode: Mode | None, error: str
) -> None:
    async with rig() as r, Sink() as sink:
        assert (await r.validator.validate(r.issuer.mint(VAULT))).kind == "managed_identity"
        fetches = len(r.server.paths)
        await enter_fault(r, mode, sink)

        # Inside the refresh-ahead window: a known kid is served at once and the
        # refresh runs in the background, where it fails.
        r.clock.advance(TTL - 5)
        assert (await r.validator.validate(r.issuer.mint(VAULT))).kind == "managed_identity"
        await settled(r.validator)
        status = r.status()
        assert status.usable
        assert status.last_error is not None
        assert error in status.last_error
        if mode is not None:
            assert len(r.server.paths) > fetches, "the fault was never exercised"
        assert sink.paths == [], "a redirect to another origin was followed"

        # Past the keys' lifetime but within max_stale: still served, from stale keys.
        r.clock.advance(10)
        assert r.status().stale
        assert r.status().usable
        response = await r.get()
        assert response.status_code == 200
        assert "retry-after" not in response.headers

        # Past max_stale: nothing usable is left, so 503 with Retry-After.
        r.clock.advance(MAX_STALE)
        with pytest.raises(KeysUnavailable) as info:
            await r.validator.validate(r.issuer.mint(VAULT))
        assert info.value.retry_after >= 1
        response = await r.get()
        assert response.status_code == 503
        assert int(response.headers["retry-after"]) >= 1
        assert response.json()["error"] == "temporarily_unavailable"
        assert not r.validator.is_ready()

        # The issuer heals: the next request after the back-off brings service back.
        await heal(r, mode)
        r.clock.advance(BACKOFF + 1)
        assert (await r.validator.validate(r.issuer.mint(VAULT))).kind == "managed_identity"
        status = r.status()
        assert status.usable
        assert not status.stale
        assert status.last_error is None
        assert (await r.get()).status_code == 200
        assert r.validator.is_ready()


@pytest.mark.parametrize("mode", ["hang", "drip"])
async def test_known_kid_never_waits_on_a_stuck_fetch(mode: Mode) -> None:
    # A long deadline: if a request waited on the fetch, the fetch would have ended
    # (and closed its connection) before the request returned.
    async with rig(deadline=30.0) as r:
        r.server.mode = mode
        r.clock.advance(TTL - 5)
        assert (await r.validator.validate(r.issuer.mint(VAULT))).kind == "managed_identity"
        await until(lambda: r.server.open_connections == 1)  # the refresh is in flight
        for _ in range(5):
            assert (await r.validator.validate(r.issuer.mint(VAULT))).kind == "managed_identity"
            assert (await r.get()).status_code == 200
        assert r.server.open_connections == 1, "a request waited for the stuck fetch"
        assert r.status().last_error is None  # still in flight, not yet failed


@pytest.mark.parametrize(
    "mode", [None, "status-500", "html", "hang"], ids=["down", "500", "html", "hang"]
)
async def test_cold_start_answers_503_until_the_issuer_heals(mode: Mode | None) -> None:
    async with rig(warm=False) as r:
        await enter_fault(r, mode)
        with pytest.raises(KeysUnavailable):
            await r.validator.warm_up()
        with pytest.raises(KeysUnavailable) as info:
            await r.validator.validate(r.issuer.mint(VAULT))
        assert 1 <= info.value.retry_after <= BACKOFF
        response = await r.get()
        assert response.status_code == 503
        assert 1 <= int(response.headers["retry-after"]) <= BACKOFF
        assert "www-authenticate" not in response.headers
        assert not r.validator.is_ready()

        await heal(r, mode)
        r.clock.advance(BACKOFF + 1)
        assert (await r.get()).status_code == 200
        assert r.validator.is_ready()


async def test_cold_start_misses_share_one_fetch() -> None:
    async with rig(warm=False) as r:
        tokens = [r.issuer.mint(VAULT) for _ in range(20)]
        identities = await asyncio.gather(*(r.validator.validate(t) for t in tokens))
        assert {i.kind for i in identities} == {"managed_identity"}
        assert sorted(r.server.paths) == sorted(
            [
                httpx.URL(r.issuer.discovery_url).path,
                httpx.URL(r.issuer.jwks_uri).path,
            ]
        )


async def test_jwks_that_drops_the_current_key() -> None:
    async with rig() as r:
        old_kid = r.issuer.signing_kid
        spare = r.issuer.add_key("EC")  # published from the start
        old_token = r.issuer.mint(VAULT)
        assert (await r.get(old_token)).status_code == 200
        r.issuer.use_key(spare)
        spare_token = r.issuer.mint(VAULT)

        r.server.mode = "drop-current-key"
        r.server.dropped = frozenset({old_kid})
        r.clock.advance(TTL - 5)
        assert (await r.get(spare_token)).status_code == 200  # starts the refresh
        await settled(r.validator)
        assert old_kid not in r.status().kids

        # The issuer withdrew the key: its tokens, even cached ones, are refused at once.
        response = await r.get(old_token)
        assert response.status_code == 401
        assert "The token signing key is unknown" in response.headers["www-authenticate"]
        assert (await r.get(spare_token)).status_code == 200

        # The key comes back: after the unknown-kid cooldown it is fetched again.
        r.server.mode = "healthy"
        r.clock.advance(COOLDOWN + 1)
        assert (await r.get(old_token)).status_code == 200
        assert old_kid in r.status().kids


async def test_rotation_during_an_outage_is_refused_not_503_then_accepted() -> None:
    async with rig() as r:
        r.server.mode = "status-500"
        new_kid = r.issuer.rotate("EC")  # published, but the issuer cannot serve it now
        token = r.issuer.mint(VAULT)
        r.clock.advance(COOLDOWN + 1)
        with pytest.raises(InvalidToken) as info:
            await r.validator.validate(token)
        # Usable keys remain, so this is not a 503: the kid is unknown to them.
        assert info.value.reason == "unknown_key"
        assert r.status().usable

        r.server.mode = "healthy"
        r.clock.advance(COOLDOWN + 1)
        assert (await r.validator.validate(token)).kind == "managed_identity"
        assert new_kid in r.status().kids


async def test_redirect_from_https_to_http_is_refused() -> None:
    async with rig(tls=True, warm=False) as r, Sink() as plain:
        r.server.mode = "redirect-http"
        r.server.redirect_to = plain.base_url
        with pytest.raises(KeysUnavailable):
            await r.validator.warm_up()
        assert "another origin" in (r.status().last_error or "")
        assert plain.paths == []

        r.server.mode = "healthy"  # over TLS the same issuer works
        r.clock.advance(BACKOFF + 1)
        assert (await r.validator.validate(r.issuer.mint(VAULT))).kind == "managed_identity"


async def test_rotation_right_after_a_routine_fetch_passes_its_first_request() -> None:
    # The warm-up fetch (or a routine refresh) happened a moment ago; then the issuer
    # starts signing with a new key. The first token with the new kid must trigger a
    # refresh and pass, not be refused (and remembered as unknown) for a cooldown.
    async with rig() as r:
        new_kid = r.issuer.rotate("EC")
        r.clock.advance(1)
        assert (await r.get()).status_code == 200
        assert new_kid in r.status().kids


async def test_unknown_kid_refreshes_stay_bounded_by_the_cooldown() -> None:
    async with rig() as r:
        fetches = len(r.server.paths)
        forged = r.issuer.forge(VAULT)
        for i in range(50):
            token = with_kid(forged, f"random-{i}")
            with pytest.raises(InvalidToken) as info:
                await r.validator.validate(token)
            assert info.value.reason == "unknown_key"
        assert len(r.server.paths) - fetches <= 2  # discovery + JWKS, once
        r.clock.advance(COOLDOWN + 1)
        for i in range(50):
            with pytest.raises(InvalidToken):
                await r.validator.validate(with_kid(forged, f"again-{i}"))
        assert len(r.server.paths) - fetches <= 4
