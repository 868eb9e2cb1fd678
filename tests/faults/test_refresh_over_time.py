"""Keys refresh without traffic, on real sockets and real time.

A protected app served by uvicorn on 127.0.0.1 (its lifespan warms the keys), issuers
served by :class:`FaultyIssuer` on 127.0.0.1, short legal lifetimes (keys live 2 s,
``max_stale`` 3 s). The only traffic is ``/readyz`` probes (which fetch nothing) and,
where a test says so, requests with one cached token. Every wait is on a condition
with a generous deadline; nothing asserts how long anything took.

No ``from __future__ import annotations``: FastAPI reads the route annotations, which
name a local ``guard``.
"""

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Annotated, Any

import anyio
import httpx
import pytest
from fastapi import Depends, FastAPI
from starlette.middleware import Middleware
from starlette.requests import Request

from tokenguard import Identity, Issuer, TokenGuardMiddleware, TokenValidator, get_identity
from tokenguard.fastapi import TokenGuard
from tokenguard.readiness import readiness_endpoint
from tokenguard.testing import LocalIssuer

from ..helpers import assert_key_retired, bearer, guarded_app, serve
from .server import FaultyIssuer

pytestmark = pytest.mark.anyio

VAULT = "https://vault.azure.net"
TTL = 2  # the issuers' Cache-Control max-age, and the smallest lifetime accepted
MAX_STALE = 3.0
#: Generous: a loaded 2-core machine may be slow, but a broken refresh never gets there.
DEADLINE = 30.0


def config(issuer: LocalIssuer) -> Issuer:
    return issuer.issuer_config(
        VAULT,
        min_cache_ttl=TTL,
        default_cache_ttl=TTL,
        max_stale=MAX_STALE,
        error_backoff=0.5,
        fetch_timeout=2.0,
        refresh_cooldown=1.0,
    )


def local_issuer() -> LocalIssuer:
    return LocalIssuer(jwks_max_age=TTL, key_type="EC")


def jwks_fetches(server: FaultyIssuer) -> int:
    return sum(1 for path in server.paths if path.endswith("/keys"))


@asynccontextmanager
async def served(app: Any) -> AsyncIterator[httpx.AsyncClient]:
    """Serve ``app`` (lifespan on) with uvicorn in a thread; yield a client for it.

    Starting and stopping block, and the issuers answer on this test's loop, so both
    run in a worker thread while this loop keeps serving the issuers.
    """
    server = serve(app, lifespan="on")
    url = await anyio.to_thread.run_sync(server.__enter__)
    try:
        async with httpx.AsyncClient(base_url=url) as http:
            yield http
    finally:
        await anyio.to_thread.run_sync(server.__exit__, None, None, None)


async def until(condition: Callable[[], Awaitable[bool]], what: str) -> None:
    """Check ``condition`` every 0.1 s until it holds; fail after :data:`DEADLINE`."""
    with anyio.move_on_after(DEADLINE):
        while not await condition():
            await anyio.sleep(0.1)
        return
    raise AssertionError(f"never happened: {what}")


async def test_idle_service_stays_ready_with_several_key_fetches() -> None:
    issuer = local_issuer()
    async with FaultyIssuer(issuer) as server:
        validator = TokenValidator([config(issuer)])
        async with served(guarded_app(validator)) as http:
            first = jwks_fetches(server)
            assert first >= 1  # the lifespan warmed the keys

            async def refreshed_three_times() -> bool:
                response = await http.get("/readyz")
                assert response.status_code == 200, response.json()
                return jwks_fetches(server) >= first + 3

            await until(refreshed_three_times, "three background refreshes")
        assert validator.status()[0].age is not None


async def test_cache_only_service_drops_a_retired_key_within_one_refresh() -> None:
    issuer = local_issuer()
    async with FaultyIssuer(issuer) as server:
        validator = TokenValidator([config(issuer)])
        async with served(guarded_app(validator)) as http:
            old_kid = issuer.signing_kid
            token = issuer.mint(VAULT, roles=["Secrets.Read"])
            assert (await http.get("/", headers=bearer(token))).status_code == 200
            issuer.rotate("EC")
            retired_at = jwks_fetches(server)
            issuer.retire(old_kid)

            async def dropped() -> bool:
                return old_kid not in validator.status()[0].kids

            await until(dropped, "a refresh that drops the retired key")
            assert jwks_fetches(server) > retired_at
            # The next request with the cached token, and every later one, is refused.
            fresh = issuer.mint(VAULT, roles=["Secrets.Read"])
            await assert_key_retired(http, token, fresh, times=3)


async def test_outage_past_lifetime_and_max_stale_gives_503_then_recovers_idle() -> None:
    issuer = local_issuer()
    async with FaultyIssuer(issuer) as server:
        validator = TokenValidator([config(issuer)])
        async with served(guarded_app(validator)) as http:
            token = issuer.mint(VAULT, roles=["Secrets.Read"])
            assert (await http.get("/", headers=bearer(token))).status_code == 200
            await server.stop()  # connection refused from now on

            async def readyz_is(status: int) -> bool:
                return (await http.get("/readyz")).status_code == status

            await until(lambda: readyz_is(503), "/readyz 503 once the keys are too old")
            response = await http.get("/", headers=bearer(token))  # the cached token
            assert response.status_code == 503
            assert int(response.headers["retry-after"]) >= 1

            await server.start()  # the issuer is back; nobody sends a token
            await until(lambda: readyz_is(200), "/readyz 200 after the issuer is back")
            assert validator.status()[0].usable
            assert (await http.get("/", headers=bearer(token))).status_code == 200


def fastapi_app(validator: TokenValidator) -> FastAPI:
    guard = TokenGuard(validator)
    app = FastAPI(
        middleware=[
            # /dep is left to the FastAPI dependency, which validates on its own.
            Middleware(TokenGuardMiddleware, validator=validator, exclude_paths=["/readyz", "/dep"])
        ]
    )
    app.add_api_route("/readyz", readiness_endpoint(validator), include_in_schema=False)

    @app.get("/mw")
    async def by_middleware(request: Request) -> dict[str, str]:
        identity = get_identity(request)
        assert identity is not None
        return {"issuer": identity.issuer}

    @app.get("/dep")
    async def by_dependency(who: Annotated[Identity, Depends(guard.identity)]) -> dict[str, str]:
        return {"issuer": who.issuer}

    return app


async def test_middleware_and_fastapi_dependency_with_two_issuers() -> None:
    one, two = local_issuer(), local_issuer()
    async with FaultyIssuer(one) as server_one, FaultyIssuer(two) as server_two:
        validator = TokenValidator([config(one), config(two)])
        async with served(fastapi_app(validator)) as http:
            tokens = {
                one: one.mint(VAULT, roles=["Secrets.Read"]),
                two: two.mint(VAULT, roles=["Secrets.Read"]),
            }

            async def answers(path: str, issuer: LocalIssuer) -> int:
                return (await http.get(path, headers=bearer(tokens[issuer]))).status_code

            for path in ("/mw", "/dep"):
                assert [await answers(path, one), await answers(path, two)] == [200, 200]
            starts = jwks_fetches(server_one), jwks_fetches(server_two)

            async def both_refreshed_twice() -> bool:
                assert (await http.get("/readyz")).status_code == 200
                return jwks_fetches(server_one) >= starts[0] + 2 and (
                    jwks_fetches(server_two) >= starts[1] + 2
                )

            await until(both_refreshed_twice, "two background refreshes of each issuer")

            await server_two.stop()

            async def two_unusable() -> bool:
                return [s.usable for s in validator.status()] == [True, False]

            await until(two_unusable, "the second issuer's keys too old")
            assert (await http.get("/readyz")).status_code == 503
            for path in ("/mw", "/dep"):  # cached tokens of the first issuer still pass
                assert [await answers(path, one), await answers(path, two)] == [200, 503]

            await server_two.start()

            async def ready() -> bool:
                return (await http.get("/readyz")).status_code == 200

            await until(ready, "the second issuer's keys back without traffic")
            for path in ("/mw", "/dep"):
                assert [await answers(path, one), await answers(path, two)] == [200, 200]
