"""tokenguard.readiness: /readyz answers and the lifespan helper (warm up, close)."""

from __future__ import annotations

import logging
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.routing import Route
from starlette.testclient import TestClient

from tokenguard import KeysUnavailable, TokenGuardMiddleware, TokenValidator
from tokenguard.readiness import (
    lifespan,
    managed_validator,
    readiness_endpoint,
    readiness_report,
)
from tokenguard.testing import LocalIssuer

from .conftest import VAULT
from .helpers import FakeClock, SwitchableIssuer, closing_spy


def failing_client() -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.MockTransport(lambda r: httpx.Response(500)))


# -- readiness_report -----------------------------------------------------------------


@pytest.mark.anyio
async def test_report_before_and_after_warm_up(issuer: LocalIssuer) -> None:
    validator = issuer.validator([VAULT], monotonic=FakeClock())
    before = readiness_report(validator)
    assert before == {
        "ready": False,
        "issuers": [
            {
                "issuer": issuer.issuer,
                "ready": False,
                "loaded": False,
                "usable": False,
                "stale": False,
                "key_count": 0,
                "age_seconds": None,
            }
        ],
    }
    await validator.warm_up()
    after = readiness_report(validator)
    assert after["ready"] is True
    assert after["issuers"][0] | {"age_seconds": 0.0} == {
        "issuer": issuer.issuer,
        "ready": True,
        "loaded": True,
        "usable": True,
        "stale": False,
        "key_count": 1,
        "age_seconds": 0.0,
    }


@pytest.mark.anyio
async def test_keys_past_max_stale_are_not_ready(issuer: LocalIssuer) -> None:
    clock = FakeClock()
    server = SwitchableIssuer(issuer)
    validator = TokenValidator(
        [issuer.issuer_config([VAULT], max_stale=600)],
        http_client=server.client(),
        monotonic=clock,
    )
    await validator.warm_up()
    server.override = lambda request: httpx.Response(503)  # the issuer goes down
    clock.now += 3600 + 1  # past the JWKS max-age: stale, still within max_stale
    report = readiness_report(validator)
    assert report["ready"] is True
    assert report["issuers"][0]["stale"] is True
    clock.now += 600  # past max_stale as well
    report = readiness_report(validator)
    assert report["ready"] is False
    assert report["issuers"][0]["usable"] is False
    assert report["issuers"][0]["loaded"] is True


@pytest.mark.anyio
async def test_max_age_requires_recent_keys(issuer: LocalIssuer) -> None:
    clock = FakeClock()
    validator = issuer.validator([VAULT], monotonic=clock)
    await validator.warm_up()
    clock.now += 120
    assert readiness_report(validator, max_age=120)["ready"] is True
    clock.now += 1
    report = readiness_report(validator, max_age=120)
    assert report["ready"] is False
    assert report["issuers"][0]["usable"] is True  # usable, just older than asked
    assert report["issuers"][0]["age_seconds"] == 121.0


@pytest.mark.anyio
async def test_every_issuer_must_be_ready() -> None:
    good, bad = LocalIssuer(), LocalIssuer()

    def route(request: httpx.Request) -> httpx.Response:
        return good.handler(request) if good.tenant_id in request.url.path else httpx.Response(500)

    validator = TokenValidator(
        [good.issuer_config([VAULT]), bad.issuer_config([VAULT])],
        http_client=httpx.AsyncClient(transport=httpx.MockTransport(route)),
    )
    with pytest.raises(KeysUnavailable):
        await validator.warm_up()
    report = readiness_report(validator, include_errors=True)
    assert report["ready"] is False
    assert [i["ready"] for i in report["issuers"]] == [True, False]
    assert report["issuers"][0]["last_error"] is None
    assert report["issuers"][1]["last_error"]
    assert "last_error" not in readiness_report(validator)["issuers"][1]


# -- endpoint -------------------------------------------------------------------------


def test_starlette_readyz_behind_the_middleware(issuer: LocalIssuer) -> None:
    server = SwitchableIssuer(issuer)
    clock = FakeClock()
    validator = TokenValidator(
        [issuer.issuer_config([VAULT], max_stale=0)],
        http_client=server.client(),
        monotonic=clock,
    )
    app = Starlette(
        routes=[Route("/readyz", readiness_endpoint(validator))],
        middleware=[
            Middleware(TokenGuardMiddleware, validator=validator, exclude_paths=["/readyz"])
        ],
    )
    with TestClient(app) as client:  # the middleware warms the keys at startup
        response = client.get("/readyz")
        assert response.status_code == 200
        assert response.json()["ready"] is True
        assert response.headers["cache-control"] == "no-store"
        server.override = lambda request: httpx.Response(503)  # the issuer goes down
        clock.now += 3601
        response = client.get("/readyz")
        assert response.status_code == 503
        assert response.json()["issuers"][0]["usable"] is False


def test_fastapi_readyz_uses_app_state(issuer: LocalIssuer) -> None:
    validator = issuer.validator([VAULT])
    app = FastAPI(lifespan=lifespan(validator))
    app.add_api_route("/readyz", readiness_endpoint(), include_in_schema=False)
    with TestClient(app) as client:
        response = client.get("/readyz")
        assert response.status_code == 200
        assert response.json()["issuers"][0]["key_count"] == 1
        assert "/readyz" not in client.get("/openapi.json").json()["paths"]


def test_fastapi_readyz_not_ready_is_503(issuer: LocalIssuer) -> None:
    validator = TokenValidator([issuer.issuer_config([VAULT])], http_client=failing_client())
    app = FastAPI()
    app.add_api_route("/readyz", readiness_endpoint(validator))
    with TestClient(app) as client:
        response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["ready"] is False


def test_endpoint_without_validator_is_a_configuration_error() -> None:
    app = Starlette(routes=[Route("/readyz", readiness_endpoint())])
    with TestClient(app) as client, pytest.raises(RuntimeError, match="no validator"):
        client.get("/readyz")


# -- lifespan -------------------------------------------------------------------------


def test_lifespan_warms_keys_sets_state_and_closes(
    issuer: LocalIssuer, monkeypatch: pytest.MonkeyPatch
) -> None:
    validator = issuer.validator([VAULT])
    closed = closing_spy(validator, monkeypatch)
    app = Starlette(lifespan=lifespan(validator))
    with TestClient(app):
        assert issuer.hits["jwks"] == 1
        assert app.state.tokenguard_validator is validator
        assert closed == []
    assert closed == [True]


def test_lifespan_keeps_an_existing_state_validator(issuer: LocalIssuer) -> None:
    validator, other = issuer.validator([VAULT]), issuer.validator([VAULT])
    app = Starlette(lifespan=lifespan(validator, warm_up=False, close=False))
    app.state.tokenguard_validator = other
    with TestClient(app):
        assert app.state.tokenguard_validator is other
    assert issuer.hits["jwks"] == 0  # warm_up=False fetched nothing


def test_lifespan_starts_despite_unavailable_keys(
    issuer: LocalIssuer, caplog: pytest.LogCaptureFixture
) -> None:
    validator = TokenValidator([issuer.issuer_config([VAULT])], http_client=failing_client())
    app = Starlette(lifespan=lifespan(validator))
    with caplog.at_level(logging.WARNING, logger="tokenguard"), TestClient(app):
        pass
    [startup] = [m for m in caplog.messages if m.startswith("keys could not be loaded")]
    # The reason is in the text (plain handlers show nothing else): the URL and the cause.
    assert startup == (
        "keys could not be loaded at startup; answering 503 until they arrive: keys of"
        f" {issuer.issuer} unavailable: discovery document {issuer.discovery_url}:"
        " HTTP status 500 (Internal Server Error)"
    )


def test_strict_lifespan_fails_startup_and_closes(
    issuer: LocalIssuer, monkeypatch: pytest.MonkeyPatch
) -> None:
    validator = TokenValidator([issuer.issuer_config([VAULT])], http_client=failing_client())
    closed = closing_spy(validator, monkeypatch)
    app = Starlette(lifespan=lifespan(validator, strict=True))
    with pytest.raises(KeysUnavailable), TestClient(app):
        pass
    assert closed == [True]


@pytest.mark.anyio
async def test_managed_validator_closes_on_error(
    issuer: LocalIssuer, monkeypatch: pytest.MonkeyPatch
) -> None:
    validator = issuer.validator([VAULT])
    closed = closing_spy(validator, monkeypatch)
    seen: list[Any] = []

    async def run() -> None:
        async with managed_validator(validator) as managed:
            seen.append(managed)
            assert validator.is_ready()
            raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"):
        await run()
    assert seen == [validator]
    assert closed == [True]


# -- two lifespans, one validator -------------------------------------------------------


def test_middleware_and_fastapi_lifespans_fetch_the_keys_once(issuer: LocalIssuer) -> None:
    from tokenguard.fastapi import TokenGuard

    server = SwitchableIssuer(issuer)
    validator = server.validator(VAULT, {})
    guard = TokenGuard(validator)
    app = FastAPI(lifespan=guard.lifespan)
    app.add_middleware(TokenGuardMiddleware, validator=validator)
    with TestClient(app):
        # Both warm the validator at startup; the second finds the keys loaded and kept
        # refreshed in the background.
        assert (server.count("openid-configuration"), server.count("keys")) == (1, 1)
    assert validator.is_ready()


@pytest.mark.anyio
async def test_warm_up_fetches_again_when_due_or_after_close(issuer: LocalIssuer) -> None:
    clock = FakeClock()
    server = SwitchableIssuer(issuer)
    validator = server.validator(VAULT, {}, monotonic=clock)
    await validator.warm_up()
    await validator.warm_up()  # fresh keys, refreshed in the background: nothing to do
    assert server.count("keys") == 1
    clock.advance(86_400)  # past the refresh point (the fake timer has not run)
    await validator.warm_up()
    assert server.count("keys") == 2
    await validator.aclose()  # the background refresh stopped: warm-up starts it again
    await validator.warm_up()
    assert server.count("keys") == 3
    await validator.aclose()
