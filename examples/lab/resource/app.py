"""What makes a toy Azure resource: tokenguard in front, RBAC by object id, Azure's headers.

Both toy services sit behind :class:`tokenguard.TokenGuardMiddleware`; the handlers use
the :class:`tokenguard.Identity` it injects, and decide access from the lab's role
assignments by the caller's object id (as Azure RBAC does), not from token claims:
tokens for Azure resources carry no roles. :class:`Resource` holds what every handler
needs; :func:`protected_app` wires the middleware, the error dialect and the lifespan.
Every service's ``create_app`` takes the same :class:`ServiceOptions` from the lab.
"""

from __future__ import annotations

import contextlib
import logging
import re
import time
import uuid
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, NotRequired, Self, TypedDict

from starlette.applications import Starlette
from starlette.datastructures import MutableHeaders
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import HTTPConnection, Request
from starlette.responses import Response
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tokenguard import (
    IDENTITY_SCOPE_KEY,
    ErrorRenderer,
    Identity,
    InsufficientScope,
    TokenGuardError,
    TokenGuardMiddleware,
    TokenValidator,
    challenge,
)

from .._http import printable
from ..identity import RoleAssignments
from .db import Database
from .errors import Dialect, ServiceError

__all__ = [
    "CALLER_HEADER",
    "LabHeaders",
    "Resource",
    "ServiceOptions",
    "caller_label",
    "identity_of",
    "protected_app",
]

logger = logging.getLogger("tokenguard.lab.resource")

#: Response header naming the caller the resource saw (object id and name, never the token).
CALLER_HEADER: Final = "x-ms-lab-caller"
_MAX_CLIENT_REQUEST_ID: Final = 1024
_VERSION: Final = re.compile(r"\d{4}-\d{2}-\d{2}")


def identity_of(request: Request) -> Identity:
    """The verified identity of the caller (the middleware guarantees there is one)."""
    identity = request.scope.get(IDENTITY_SCOPE_KEY)
    if not isinstance(identity, Identity):
        raise RuntimeError("no verified identity: is TokenGuardMiddleware installed?")
    return identity


def caller_label(identity: Identity) -> str:
    """``oid=...; name=...; kind=...``: printable ASCII, safe for a header and a log line."""
    parts = [f"oid={printable(identity.object_id or '-')}"]
    if identity.display_name:
        parts.append(f"name={printable(identity.display_name)}")
    parts.append(f"kind={identity.kind}")
    return "; ".join(parts)


class LabHeaders:
    """Pure ASGI: add ``x-ms-request-id``, echo ``x-ms-client-request-id``, name the caller.

    Sits outside the token middleware so rejections carry a request id too; the caller
    header appears once the middleware has put a verified identity in the scope.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        static: Mapping[str, str] | None = None,
        version: str | None = None,
    ) -> None:
        self.app = app
        self.static = dict(static or {})
        #: Storage answers with ``x-ms-version``: the client's, else this default.
        self.version = version

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = str(uuid.uuid4())
        scope.setdefault("state", {})["request_id"] = request_id
        client_id: str | None = None
        version = self.version
        for name, value in scope["headers"]:
            if name == b"x-ms-client-request-id":
                text = value.decode("latin-1")
                if len(text) <= _MAX_CLIENT_REQUEST_ID and text == printable(text, len(text)):
                    client_id = text
            elif name == b"x-ms-version" and version is not None:
                text = value.decode("latin-1")
                if _VERSION.fullmatch(text):
                    version = text

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers["x-ms-request-id"] = request_id
                if client_id is not None:
                    headers["x-ms-client-request-id"] = client_id
                if version is not None:
                    headers["x-ms-version"] = version
                for key, value in self.static.items():
                    headers.setdefault(key, value)
                identity = scope.get(IDENTITY_SCOPE_KEY)
                if isinstance(identity, Identity):
                    headers[CALLER_HEADER] = caller_label(identity)
            await send(message)

        await self.app(scope, receive, send_with_headers)


class ServiceOptions(TypedDict):
    """What the lab gives every toy service: the keyword arguments of its ``create_app``.

    ``validator`` must accept the service's audience only (:func:`protected_app` checks);
    the app warms it up at startup but does not close it (whoever created it does).
    ``rbac`` holds the role assignments the service asks by the caller's object id;
    ``state_dir`` the service's files, in a subfolder of its own; ``public_url`` is the
    URL clients use (ids and links are built from it); ``authority`` (the issuer's base
    URL) and ``tenant_id`` are named in the 401 challenge; ``clock`` gives wall-clock
    seconds (default :func:`time.time`).
    """

    validator: TokenValidator
    rbac: RoleAssignments
    state_dir: Path
    public_url: str
    authority: str
    tenant_id: str
    clock: NotRequired[Callable[[], float]]


@dataclass(frozen=True, kw_only=True)
class Resource:
    """What every handler of a toy service shares: what the lab gave it, the ``audience``
    its tokens carry, its database and its error dialect."""

    options: ServiceOptions
    audience: str
    db: Database
    dialect: Dialect

    @classmethod
    def of(cls, request: Request) -> Self:
        """The resource of the app serving ``request`` (:func:`protected_app` keeps it)."""
        resource: Self = request.app.state.resource
        return resource

    @property
    def rbac(self) -> RoleAssignments:
        """The role assignments, asked by the caller's object id."""
        return self.options["rbac"]

    @property
    def base_url(self) -> str:
        """The public URL without a trailing slash: ids and links start with it."""
        return self.options["public_url"].rstrip("/")

    @property
    def challenge_params(self) -> dict[str, str]:
        """The ``WWW-Authenticate`` parameters, naming the tenant and the resource."""
        authority = f"{self.options['authority'].rstrip('/')}/{self.options['tenant_id']}"
        return self.dialect.challenge(authority, self.audience)

    def clock(self) -> float:
        """Wall-clock seconds now."""
        return self.options.get("clock", time.time)()

    def authorize(
        self, request: Request, roles: frozenset[str], scope: str, action: str
    ) -> Identity:
        """The caller, if it holds one of ``roles`` at ``scope`` (RBAC by object id);
        else the dialect's 403 for ``action``, with an ``insufficient_scope`` challenge."""
        identity = identity_of(request)
        oid = identity.object_id
        if oid is None or not self.rbac.has_any(oid, roles, scope):
            logger.info("forbidden: %s may not %s at %s", caller_label(identity), action, scope)
            error = self.dialect.forbidden(identity, action, scope)
            error.headers["WWW-Authenticate"] = challenge(
                InsufficientScope(reason="missing_role"), None, self.challenge_params
            )
            raise error
        return identity


def _check_validator(validator: TokenValidator, audience: str) -> None:
    """The validator must accept ``audience`` only (with or without a trailing slash): a
    token for another resource must never reach the routes. Its issuers must pass
    ``require_roles_or_scopes=False``: tokens for Azure resources carry neither ``roles``
    nor ``scp``, and the resource authorizes by object id (RBAC)."""
    others = {a for issuer in validator.issuers for a in issuer.audiences}
    others = {a for a in others if a.rstrip("/") != audience.rstrip("/")}
    if others:
        raise ValueError(f"the validator also accepts {sorted(others)}, not meant for {audience}")
    if any(issuer.require_roles_or_scopes for issuer in validator.issuers):
        raise ValueError(
            f"{audience} authorizes by object id and its tokens carry no roles: "
            "trust its issuer with Issuer(..., require_roles_or_scopes=False)"
        )


def protected_app(
    resource: Resource, *, routes: Sequence[BaseRoute], headers: Middleware
) -> Starlette:
    """A toy resource: ``headers`` outermost, then tokenguard (Azure's bare challenge,
    no realm; the lab closes the validator, not the app), then the routes, with every
    error rendered by ``resource.dialect``. Handlers find ``resource`` with :meth:`Resource.of`;
    its database is closed when the app stops. The validator is checked first
    (:func:`_check_validator`).
    """
    validator = resource.options["validator"]
    _check_validator(validator, resource.audience)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        try:
            yield
        finally:
            resource.db.close()

    app = Starlette(
        routes=list(routes),
        middleware=[
            headers,
            Middleware(
                TokenGuardMiddleware,
                validator=validator,
                realm=None,
                challenge_params=resource.challenge_params,
                on_error=_token_error_renderer(resource.dialect),
                close_validator=False,
            ),
        ],
        exception_handlers=_exception_handlers(resource.dialect),
        lifespan=lifespan,
    )
    app.router.redirect_slashes = False
    app.state.resource = resource
    return app


def _exception_handlers(dialect: Dialect) -> dict[Any, Callable[..., Any]]:
    """Starlette's exception handlers, rendering in ``dialect``: a handler's
    :class:`ServiceError`, the router's 404/405, and anything else as a 500."""

    async def service_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, ServiceError)
        return dialect.render(exc, request)

    async def route_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        error = dialect.route_error(request.method, exc.status_code, str(exc.detail))
        error.headers.update(exc.headers or {})  # Allow, for a 405
        return dialect.render(error, request)

    async def server_error(request: Request, exc: Exception) -> Response:
        return dialect.render(dialect.server_error(), request)

    return {
        ServiceError: service_error,
        HTTPException: route_error,
        Exception: server_error,
    }


def _token_error_renderer(dialect: Dialect) -> ErrorRenderer:
    """tokenguard's refusals in ``dialect``, carrying the middleware's challenge headers."""

    def token_error(
        conn: HTTPConnection, exc: TokenGuardError, challenge_headers: dict[str, str]
    ) -> Response:
        error = dialect.token_error(exc)
        error.headers.update(challenge_headers)
        return dialect.render(error, conn)

    return token_error
