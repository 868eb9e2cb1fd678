"""The App Service / Container Apps identity endpoint (``IDENTITY_ENDPOINT``).

    GET /msi/token?resource=...&api-version=2019-08-01     X-IDENTITY-HEADER: $IDENTITY_HEADER
        [&client_id=... | &principal_id=... (alias object_id) | &mi_res_id=...]

The answer has ``access_token, expires_on, resource, token_type, client_id`` and no
``expires_in``; errors are ``{"statusCode": ..., "message": ..., "correlationId": ...}``.
A selector that is empty, repeated, combined with another, or spelled the IMDS way
(``msi_res_id``) is 400, and one naming no user-assigned identity 404: never the
system-assigned identity.
"""

from __future__ import annotations

import hmac
import time
import uuid
from collections.abc import Callable
from typing import Final

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from .tenant import LabConfig, ManagedIdentity
from .tokens import (
    ALL_METHODS,
    IdentityNotSelected,
    RateLimiter,
    TokenService,
    resource_problem,
    select_identity,
)

__all__ = ["API_VERSION", "TOKEN_PATH", "create_app_service_app"]

API_VERSION: Final = "2019-08-01"
TOKEN_PATH: Final = "/msi/token"
#: The user-assigned identity selectors the endpoint reads (see
#: :data:`~examples.lab.identity.tokens.SELECTOR_KEYWORDS`).
_SELECTORS: Final = ("client_id", "principal_id", "object_id", "mi_res_id")


def _error(status: int, message: str, **headers: str) -> JSONResponse:
    body = {"statusCode": status, "message": message, "correlationId": str(uuid.uuid4())}
    return JSONResponse(body, status_code=status, headers=headers)


class _AppService:
    def __init__(
        self, config: LabConfig, tokens: TokenService, secret: str, limiter: RateLimiter
    ) -> None:
        self.config = config
        self.tokens = tokens
        self.secret = secret.encode()
        self.limiter = limiter

    def _identity(self, request: Request) -> ManagedIdentity | Response:
        try:
            return select_identity(self.config, request.query_params, _SELECTORS)
        except IdentityNotSelected as exc:
            return _error(exc.status, exc.description)

    async def token(self, request: Request) -> Response:
        if request.method != "GET":
            return _error(405, "Method not allowed.", Allow="GET")
        header = request.headers.get("x-identity-header")
        if header is None:
            return _error(400, "The X-IDENTITY-HEADER header is required.")
        if not hmac.compare_digest(header.encode(), self.secret):
            return _error(401, "The X-IDENTITY-HEADER header is not valid.")
        query = request.query_params
        version = query.get("api-version")
        if version != API_VERSION:
            return _error(400, f"api-version must be {API_VERSION}.")
        resource = query.get("resource", "")
        if not resource:
            return _error(400, "The resource parameter is required.")
        problem = resource_problem(resource)
        if problem is not None:
            return _error(400, problem)
        identity = self._identity(request)
        if isinstance(identity, Response):
            return identity
        if not self.limiter.allow(identity.object_id):
            return _error(429, "Too many requests, retry later.", **{"Retry-After": "1"})
        issued = self.tokens.token(identity, resource)
        body = {
            "access_token": issued.token,
            "expires_on": str(issued.expires_on),
            "resource": resource,
            "token_type": "Bearer",
            "client_id": identity.client_id,
        }
        return JSONResponse(body, headers={"Cache-Control": "no-store"})

    async def not_found(self, request: Request) -> Response:
        return _error(404, "Not found.")


def create_app_service_app(
    config: LabConfig,
    tokens: TokenService,
    *,
    secret: str,
    monotonic: Callable[[], float] = time.monotonic,
) -> Starlette:
    """The App Service identity endpoint app; ``secret`` is the ``IDENTITY_HEADER`` value."""
    if not secret:
        raise ValueError("the identity header secret must not be empty")
    service = _AppService(
        config, tokens, secret, RateLimiter(config.imds.rate_limit, monotonic=monotonic)
    )
    return Starlette(
        routes=[
            Route(TOKEN_PATH, service.token, methods=ALL_METHODS),
            Route("/{path:path}", service.not_found, methods=ALL_METHODS),
        ]
    )
