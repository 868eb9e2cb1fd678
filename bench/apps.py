"""The route under test, bare and behind each kind of protection.

Every variant serves the same ``GET /data`` answering ``ok``, so that the only
difference between them is the authentication in front of it.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Security
from starlette.applications import Starlette
from starlette.authentication import (
    AuthCredentials,
    AuthenticationBackend,
    BaseUser,
    SimpleUser,
)
from starlette.middleware import Middleware
from starlette.middleware.authentication import AuthenticationMiddleware
from starlette.requests import HTTPConnection, Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from tokenguard import TokenGuardMiddleware, TokenValidator

__all__ = [
    "fastapi_app",
    "fastapi_azure_auth_app",
    "starlette_app",
    "starlette_constant_auth_app",
]


async def _data(request: Request) -> PlainTextResponse:
    return PlainTextResponse("ok")


def _guard(validator: TokenValidator | None) -> list[Middleware]:
    if validator is None:
        return []
    return [Middleware(TokenGuardMiddleware, validator=validator)]


def starlette_app(validator: TokenValidator | None = None) -> Starlette:
    """The Starlette route, behind ``TokenGuardMiddleware`` when a validator is given."""
    return Starlette(routes=[Route("/data", _data)], middleware=_guard(validator))


class _ConstantUser(AuthenticationBackend):
    """Authenticates everyone as the same user without reading any credential."""

    async def authenticate(self, conn: HTTPConnection) -> tuple[AuthCredentials, BaseUser]:
        return AuthCredentials(["R"]), SimpleUser("someone")


def starlette_constant_auth_app() -> Starlette:
    """The route behind Starlette's own ``AuthenticationMiddleware`` doing no token work:
    what injecting a user costs before any token is looked at."""
    middleware = [Middleware(AuthenticationMiddleware, backend=_ConstantUser())]
    return Starlette(routes=[Route("/data", _data)], middleware=middleware)


def fastapi_app(validator: TokenValidator | None = None) -> FastAPI:
    """The same route in FastAPI, behind ``TokenGuardMiddleware`` when a validator is given."""
    app = FastAPI(middleware=_guard(validator), openapi_url=None)

    @app.get("/data", response_class=PlainTextResponse)
    async def data() -> PlainTextResponse:
        return PlainTextResponse("ok")

    return app


def fastapi_azure_auth_app(*, tenant_id: str, discovery_url: str, audience: str) -> FastAPI:
    """The FastAPI route behind ``fastapi-azure-auth``, its OpenID config at ``discovery_url``.

    fastapi-azure-auth fetches the config and JWKS itself (with its own HTTP client)
    on the first request and checks signature, ``iss``, ``aud``, ``exp``, ``nbf`` and
    ``iat`` on every request; it has no verified-token cache.
    """
    from fastapi_azure_auth.auth import AzureAuthorizationCodeBearerBase

    scheme: Any = AzureAuthorizationCodeBearerBase(
        app_client_id=audience,
        tenant_id=tenant_id,
        openid_config_url=discovery_url,
        http_client_config={"timeout": 5.0},
    )
    app = FastAPI(openapi_url=None)

    @app.get("/data", response_class=PlainTextResponse, dependencies=[Security(scheme)])
    async def data() -> PlainTextResponse:
        return PlainTextResponse("ok")

    return app
