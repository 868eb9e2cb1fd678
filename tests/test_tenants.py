"""Dynamic tenant decisions: ``Issuer(tenants=<async tid -> bool>)`` (``_tenants``)."""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import httpx
import pytest
from fastapi import Depends, FastAPI
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from tokenguard import (
    Identity,
    InvalidToken,
    Issuer,
    KeysUnavailable,
    TenantUnavailable,
    TokenGuardMiddleware,
    TokenValidator,
    require_identity,
)
from tokenguard._config import (
    DEFAULT_TENANT_CACHE_SIZE,
    DEFAULT_TENANT_CACHE_TTL,
    DEFAULT_TENANT_CHECK_TIMEOUT,
)
from tokenguard._tenants import TENANT_RETRY_AFTER
from tokenguard.fastapi import TokenGuard
from tokenguard.testing import LocalIssuer

from .helpers import FakeClock, bearer

API = "api://orders"
ROLE = ["Orders.Read"]
TEMPLATE = "https://login.microsoftonline.com/{tenantid}/v2.0"
ONBOARDED = "3f1c2b4a-0000-4000-8000-00000000000a"
OTHER = "3f1c2b4a-0000-4000-8000-00000000000b"
THIRD = "3f1c2b4a-0000-4000-8000-00000000000c"


@pytest.fixture(scope="module")
def multi() -> LocalIssuer:
    """A multi-tenant (``{tenantid}``) issuer; only minted from, never changed."""
    return LocalIssuer(issuer=TEMPLATE)


class Directory:
    """A stand-in customer database: counts calls per tenant and can fail or stall."""

    def __init__(self, onboarded: set[str]) -> None:
        self.onboarded = onboarded
        self.calls: Counter[str] = Counter()
        self.error: Exception | None = None
        self.gate: anyio.Event | None = None
        self.answer: Any = None

    async def __call__(self, tid: str) -> bool:
        self.calls[tid] += 1
        if self.gate is not None:
            await self.gate.wait()
        if self.error is not None:
            raise self.error
        if self.answer is not None:
            return self.answer  # type: ignore[no-any-return]
        return tid in self.onboarded


def validator_for(
    multi: LocalIssuer,
    tenants: Callable[[str], Awaitable[bool]],
    monotonic: FakeClock | None = None,
    **options: Any,
) -> TokenValidator:
    extra = {} if monotonic is None else {"monotonic": monotonic}
    return multi.validator(API, tenants=tenants, **options, **extra)


def mint(multi: LocalIssuer, tenant: str, **claims: Any) -> str:
    return multi.mint(API, tenant_id=tenant, roles=ROLE, version="2.0", **claims)


# -- configuration ------------------------------------------------------------------


def test_defaults_are_named_constants() -> None:
    issuer = Issuer(issuer=TEMPLATE, audiences=[API], jwks_uri="https://k.test/keys")
    assert issuer.tenant_cache_ttl == DEFAULT_TENANT_CACHE_TTL == 300.0
    assert issuer.tenant_cache_size == DEFAULT_TENANT_CACHE_SIZE == 10_000
    assert issuer.tenant_check_timeout == DEFAULT_TENANT_CHECK_TIMEOUT == 5.0
    assert issuer.tenant_check is None


def test_async_callables_are_accepted_and_kept_as_given() -> None:
    directory = Directory(set())
    issuer = Issuer(
        issuer=TEMPLATE, audiences=[API], jwks_uri="https://k.test/keys", tenants=directory
    )
    assert issuer.tenants is directory
    assert issuer.tenant_check is directory
    assert issuer.tenant_allowed("anything")  # the static gate leaves it to the callable


@pytest.mark.parametrize(
    ("options", "error"),
    [
        ({"tenants": lambda tid: True}, TypeError),
        ({"tenants": len}, TypeError),
        ({"tenant_cache_size": 0}, ValueError),
        ({"tenant_cache_ttl": 0}, ValueError),
        ({"tenant_cache_ttl": float("nan")}, ValueError),
        ({"tenant_check_timeout": -1}, ValueError),
        ({"tenant_check_timeout": float("inf")}, ValueError),
    ],
)
def test_nonsense_is_refused(options: dict[str, Any], error: type[Exception]) -> None:
    with pytest.raises(error):
        Issuer(issuer=TEMPLATE, audiences=[API], jwks_uri="https://k.test/keys", **options)


def test_a_callable_needs_a_template() -> None:
    with pytest.raises(ValueError, match="template"):
        Issuer(
            issuer="https://login.microsoftonline.com/t/v2.0",
            audiences=[API],
            jwks_uri="https://k.test/keys",
            tenants=Directory(set()),
        )


# -- decisions ----------------------------------------------------------------------


@pytest.mark.anyio
async def test_asked_once_per_tenant_per_lifetime(multi: LocalIssuer) -> None:
    clock = FakeClock()
    directory = Directory({ONBOARDED, OTHER})
    async with validator_for(multi, directory, clock, tenant_cache_ttl=60) as validator:
        for _ in range(3):  # distinct tokens, one tenant: one call
            assert (await validator.validate(mint(multi, ONBOARDED))).tenant_id == ONBOARDED
        await validator.validate(mint(multi, OTHER))
        assert directory.calls == {ONBOARDED: 1, OTHER: 1}
        clock.advance(59)
        await validator.validate(mint(multi, ONBOARDED))
        assert directory.calls[ONBOARDED] == 1
        clock.advance(1)  # the decision expired: asked again, once
        await validator.validate(mint(multi, ONBOARDED))
        await validator.validate(mint(multi, ONBOARDED))
        assert directory.calls == {ONBOARDED: 2, OTHER: 1}


@pytest.mark.anyio
async def test_denial_is_401_wrong_tenant_and_cached(multi: LocalIssuer) -> None:
    clock = FakeClock()
    directory = Directory({ONBOARDED})
    async with validator_for(multi, directory, clock) as validator:
        for _ in range(3):
            with pytest.raises(InvalidToken) as caught:
                await validator.validate(mint(multi, OTHER))
            assert caught.value.reason == "wrong_tenant"
            assert caught.value.status_code == 401
        assert directory.calls == {OTHER: 1}
        directory.onboarded.add(OTHER)  # onboarded meanwhile: seen once the denial expires
        clock.advance(DEFAULT_TENANT_CACHE_TTL)
        assert (await validator.validate(mint(multi, OTHER))).tenant_id == OTHER
        assert directory.calls == {OTHER: 2}


@pytest.mark.anyio
async def test_the_callable_gets_the_tenant_lower_cased(multi: LocalIssuer) -> None:
    directory = Directory({ONBOARDED})
    async with validator_for(multi, directory) as validator:
        await validator.validate(mint(multi, ONBOARDED.upper()))
        await validator.validate(mint(multi, ONBOARDED))
    assert directory.calls == {ONBOARDED: 1}


@pytest.mark.anyio
async def test_a_cached_token_never_asks(multi: LocalIssuer) -> None:
    clock, wall = FakeClock(), FakeClock(time.time())  # cache time and token time
    directory = Directory({ONBOARDED})
    validator = validator_for(multi, directory, clock, tenant_cache_ttl=600, clock=wall)
    async with validator:
        token = mint(multi, ONBOARDED)
        first = await validator.validate(token)
        directory.error = RuntimeError("database down")  # any call would now fail
        clock.advance(599)
        wall.advance(599)
        assert await validator.validate(token) is first  # a cache hit
        assert validator.cached(token) is first
        assert directory.calls == {ONBOARDED: 1}
        clock.advance(1)
        wall.advance(1)
        # The cached token lives no longer than its tenant's decision: verified again,
        # the tenant is asked again (and the outage shows).
        assert validator.cached(token) is None
        with pytest.raises(TenantUnavailable):
            await validator.validate(token)
        assert directory.calls == {ONBOARDED: 2}


@pytest.mark.anyio
async def test_only_verified_tokens_are_decided(multi: LocalIssuer) -> None:
    directory = Directory({ONBOARDED})
    async with validator_for(multi, directory) as validator:
        for bad in (
            multi.forge(API, tenant_id=OTHER, roles=ROLE, version="2.0"),
            multi.mint("api://someone-else", tenant_id=OTHER, roles=ROLE, version="2.0"),
            multi.mint(API, tenant_id=OTHER, roles=ROLE, version="2.0", lifetime=-3600),
            multi.mint(API, tenant_id=OTHER, version="2.0"),  # grants nothing
        ):
            with pytest.raises(InvalidToken) as caught:
                await validator.validate(bad)
            assert caught.value.reason != "wrong_tenant"
    assert directory.calls == {}


@pytest.mark.anyio
async def test_decisions_are_bounded(multi: LocalIssuer) -> None:
    directory = Directory({ONBOARDED, OTHER, THIRD})
    async with validator_for(multi, directory, tenant_cache_size=2) as validator:
        for tenant in (ONBOARDED, OTHER, ONBOARDED, THIRD):  # OTHER is least recent
            await validator.validate(mint(multi, tenant))
        decisions = validator._states[0].tenant_decisions
        assert decisions is not None and len(decisions) == 2
        await validator.validate(mint(multi, ONBOARDED))
        await validator.validate(mint(multi, OTHER))
    assert directory.calls == {ONBOARDED: 1, OTHER: 2, THIRD: 1}


# -- single flight --------------------------------------------------------------------


@pytest.mark.parametrize("anyio_backend", ["asyncio", "trio"])
@pytest.mark.anyio
async def test_concurrent_first_requests_share_one_call(multi: LocalIssuer) -> None:
    directory = Directory({ONBOARDED})
    directory.gate = anyio.Event()
    results: list[Identity] = []
    validator = validator_for(multi, directory)
    tokens = [mint(multi, ONBOARDED) for _ in range(20)]
    await validator.warm_up()

    async def one(token: str) -> None:
        results.append(await validator.validate(token))

    async with anyio.create_task_group() as group:
        for token in tokens:
            group.start_soon(one, token)
        while directory.calls[ONBOARDED] == 0:
            await anyio.sleep(0)
        for _ in range(10):  # let every request reach the decision
            await anyio.sleep(0)
        directory.gate.set()
    assert len(results) == 20
    assert directory.calls == {ONBOARDED: 1}
    await validator.aclose()


@pytest.mark.anyio
async def test_a_cancelled_first_request_does_not_cancel_the_call(multi: LocalIssuer) -> None:
    directory = Directory({ONBOARDED})
    directory.gate = anyio.Event()
    async with validator_for(multi, directory) as validator:
        await validator.warm_up()
        with anyio.move_on_after(0.05):
            await validator.validate(mint(multi, ONBOARDED))
        directory.gate.set()
        assert (await validator.validate(mint(multi, ONBOARDED))).tenant_id == ONBOARDED
    assert directory.calls == {ONBOARDED: 1}


# -- errors ---------------------------------------------------------------------------


@pytest.mark.parametrize("anyio_backend", ["asyncio", "trio"])
@pytest.mark.anyio
async def test_errors_are_503_then_recover(
    multi: LocalIssuer, caplog: pytest.LogCaptureFixture
) -> None:
    directory = Directory({ONBOARDED})
    directory.error = ConnectionError("database down")
    async with validator_for(multi, directory) as validator:
        for _ in range(2):  # not remembered: every request asks again
            with pytest.raises(TenantUnavailable) as caught, caplog.at_level(logging.ERROR):
                await validator.validate(mint(multi, ONBOARDED))
            error = caught.value
            assert isinstance(error, KeysUnavailable)
            assert (error.status_code, error.reason) == (503, "tenant_unavailable")
            assert error.retry_after == TENANT_RETRY_AFTER
        assert "tenant check failed" in caplog.text
        assert directory.calls == {ONBOARDED: 2}
        directory.error = None
        assert (await validator.validate(mint(multi, ONBOARDED))).tenant_id == ONBOARDED
        await validator.validate(mint(multi, ONBOARDED))
        assert directory.calls == {ONBOARDED: 3}


@pytest.mark.parametrize("anyio_backend", ["asyncio", "trio"])
@pytest.mark.anyio
async def test_a_stalled_call_times_out_as_503(multi: LocalIssuer) -> None:
    directory = Directory({ONBOARDED})
    directory.gate = anyio.Event()  # never set
    async with validator_for(multi, directory, tenant_check_timeout=0.05) as validator:
        with anyio.fail_after(5), pytest.raises(TenantUnavailable):
            await validator.validate(mint(multi, ONBOARDED))
        directory.gate.set()
        assert (await validator.validate(mint(multi, ONBOARDED))).tenant_id == ONBOARDED
    assert directory.calls == {ONBOARDED: 2}


@pytest.mark.anyio
async def test_an_answer_that_is_not_a_bool_is_503(multi: LocalIssuer) -> None:
    directory = Directory({ONBOARDED})
    directory.answer = "yes"
    async with validator_for(multi, directory) as validator:
        with pytest.raises(TenantUnavailable):
            await validator.validate(mint(multi, ONBOARDED))


@pytest.mark.anyio
async def test_aclose_cancels_a_call_in_flight(multi: LocalIssuer) -> None:
    directory = Directory({ONBOARDED})
    directory.gate = anyio.Event()  # never set
    validator = validator_for(multi, directory)
    await validator.warm_up()
    outcome: list[BaseException] = []

    async def waiting() -> None:
        try:
            await validator.validate(mint(multi, ONBOARDED))
        except TenantUnavailable as exc:
            outcome.append(exc)

    with anyio.fail_after(5):
        async with anyio.create_task_group() as group:
            group.start_soon(waiting)
            while not directory.calls:
                await anyio.sleep(0)
            await validator.aclose()
    assert len(outcome) == 1


# -- through the integrations -----------------------------------------------------------


def whoami(request: Request) -> JSONResponse:
    return JSONResponse({"tenant": require_identity(request).tenant_id})


def test_through_the_middleware(multi: LocalIssuer) -> None:
    directory = Directory({ONBOARDED})
    validator = validator_for(multi, directory)
    app = Starlette(
        routes=[Route("/whoami", whoami)],
        middleware=[Middleware(TokenGuardMiddleware, validator=validator)],
    )
    good = mint(multi, ONBOARDED)
    with TestClient(app) as client:
        for _ in range(3):
            assert client.get("/whoami", headers=bearer(good)).json() == {"tenant": ONBOARDED}
        denied = client.get("/whoami", headers=bearer(mint(multi, OTHER)))
        assert denied.status_code == 401
        assert 'error="invalid_token"' in denied.headers["www-authenticate"]
        assert directory.calls == {ONBOARDED: 1, OTHER: 1}
        directory.error = RuntimeError("database down")
        down = client.get("/whoami", headers=bearer(mint(multi, THIRD)))
        assert down.status_code == 503
        assert down.headers["retry-after"] == str(TENANT_RETRY_AFTER)
        assert "www-authenticate" not in down.headers
        assert down.json() == {
            "error": "temporarily_unavailable",
            "error_description": "The token tenant cannot be checked now",
        }
        # The verified token is a cache hit: the outage does not touch it.
        assert client.get("/whoami", headers=bearer(good)).status_code == 200
    assert directory.calls == {ONBOARDED: 1, OTHER: 1, THIRD: 1}


def test_through_a_fastapi_guard(multi: LocalIssuer) -> None:
    directory = Directory({ONBOARDED})
    guard = TokenGuard(validator_for(multi, directory))
    app = FastAPI(lifespan=guard.lifespan)

    @app.get("/whoami")
    async def me(identity: Identity = Depends(guard.identity)) -> dict[str, Any]:  # noqa: B008
        return {"tenant": identity.tenant_id}

    good = mint(multi, ONBOARDED)
    with TestClient(app) as client:
        assert client.get("/whoami", headers=bearer(good)).json() == {"tenant": ONBOARDED}
        assert client.get("/whoami", headers=bearer(good)).status_code == 200
        assert client.get("/whoami", headers=bearer(mint(multi, OTHER))).status_code == 401
        directory.error = RuntimeError("database down")
        down = client.get("/whoami", headers=bearer(mint(multi, THIRD)))
        assert down.status_code == 503
        assert down.headers["retry-after"] == str(TENANT_RETRY_AFTER)
    assert directory.calls == {ONBOARDED: 1, OTHER: 1, THIRD: 1}


@pytest.mark.anyio
async def test_an_offboarded_tenants_cached_token_is_refused_once_its_decision_expires(
    multi: LocalIssuer,
) -> None:
    # A cache-only service: the same two tokens for hours, the middleware and a FastAPI
    # guard on one validator. A tenant offboarded in the database keeps its cached token
    # only until its decision expires; the onboarded one is asked once per lifetime.
    monotonic, wall = FakeClock(), FakeClock(time.time())
    directory = Directory({ONBOARDED, OTHER})
    validator = validator_for(multi, directory, monotonic, tenant_cache_ttl=600, clock=wall)
    guard = TokenGuard(validator)
    app = FastAPI()

    @app.get("/guarded")
    async def guarded(identity: Identity = Depends(guard.identity)) -> dict[str, Any]:  # noqa: B008
        return {"tenant": identity.tenant_id}

    app.add_middleware(TokenGuardMiddleware, validator=validator)
    stays = mint(multi, ONBOARDED, lifetime=86_400)
    leaves = mint(multi, OTHER, lifetime=86_400)

    def advance(seconds: float) -> None:
        monotonic.advance(seconds)
        wall.advance(seconds)

    transport = httpx.ASGITransport(app=app)
    async with validator, httpx.AsyncClient(transport=transport, base_url="http://t") as http:

        async def tenant_of(token: str) -> Any:
            return (await http.get("/guarded", headers=bearer(token))).json()

        for _ in range(2):  # verified and decided, then cache hits
            assert await tenant_of(stays) == {"tenant": ONBOARDED}
            assert await tenant_of(leaves) == {"tenant": OTHER}
        advance(599)
        directory.onboarded.discard(OTHER)  # offboarded: the cached decision still says yes
        assert await tenant_of(leaves) == {"tenant": OTHER}
        assert directory.calls == {ONBOARDED: 1, OTHER: 1}
        advance(1)
        refused = await http.get("/guarded", headers=bearer(leaves))
        assert refused.status_code == 401
        assert 'error="invalid_token"' in refused.headers["www-authenticate"]
        for hour in range(1, 4):  # three idle hours, one request every ten minutes
            for _ in range(6):
                assert await tenant_of(stays) == {"tenant": ONBOARDED}
                assert (await http.get("/guarded", headers=bearer(leaves))).status_code == 401
                advance(600)
            assert directory.calls[ONBOARDED] == 1 + 6 * hour
    # The denial is remembered like a grant: decided at 600 s, then asked once per
    # lifetime (1200 s ... 10800 s), as the onboarded tenant is.
    assert directory.calls == {ONBOARDED: 19, OTHER: 19}
