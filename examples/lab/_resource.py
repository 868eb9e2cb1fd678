"""What the toy Key Vault and Storage share: who the caller is, RBAC answers, headers, bodies.

Both services sit behind :class:`tokenguard.TokenGuardMiddleware`; the handlers use the
:class:`tokenguard.Identity` it injects, and decide access from the lab's role
assignments by the caller's object id (as Azure RBAC does), not from token claims.
"""

from __future__ import annotations

import contextlib
import re
import uuid
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from typing import Any, Final

from starlette.applications import Starlette
from starlette.datastructures import MutableHeaders
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tokenguard import (
    IDENTITY_SCOPE_KEY,
    ErrorRenderer,
    Identity,
    InsufficientScope,
    TokenGuardMiddleware,
    TokenValidator,
    challenge,
)

from .rbac import RoleAssignments

__all__ = [
    "CALLER_HEADER",
    "BodyTooLarge",
    "LabHeaders",
    "allowed",
    "ascii_int",
    "caller_label",
    "forbidden_challenge",
    "identity_of",
    "protected_app",
    "read_body",
]

#: Response header naming the caller the resource saw (object id and name, never the token).
CALLER_HEADER: Final = "x-ms-lab-caller"
_MAX_CLIENT_REQUEST_ID: Final = 1024
_VERSION: Final = re.compile(r"\d{4}-\d{2}-\d{2}")


def ascii_int(text: str, max_digits: int = 18) -> int | None:
    """``text`` as a non-negative integer if it is 1 to ``max_digits`` ASCII digits, else None.

    ``str.isdigit`` accepts characters such as superscript two that ``int`` refuses.
    """
    if not 0 < len(text) <= max_digits or not (text.isascii() and text.isdigit()):
        return None
    return int(text)


def identity_of(request: Request) -> Identity:
    """The verified identity of the caller (the middleware guarantees there is one)."""
    identity = request.scope.get(IDENTITY_SCOPE_KEY)
    if not isinstance(identity, Identity):
        raise RuntimeError("no verified identity: is TokenGuardMiddleware installed?")
    return identity


def allowed(rbac: RoleAssignments, identity: Identity, roles: frozenset[str], scope: str) -> bool:
    """Whether the caller holds one of ``roles`` at ``scope`` (assignments are by object id)."""
    return identity.object_id is not None and rbac.has_any(identity.object_id, roles, scope)


def forbidden_challenge(params: Mapping[str, str]) -> str:
    """The RFC 6750 ``WWW-Authenticate`` value for a valid token without the needed role."""
    return challenge(InsufficientScope(reason="missing_role"), None, params)


def _printable(text: str, limit: int = 200) -> str:
    return "".join(c for c in text[:limit] if " " <= c <= "~")


def caller_label(identity: Identity) -> str:
    """``oid=...; name=...; kind=...``: printable ASCII, safe for a header and a log line."""
    parts = [f"oid={_printable(identity.object_id or '-')}"]
    if identity.display_name:
        parts.append(f"name={_printable(identity.display_name)}")
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
                if len(text) <= _MAX_CLIENT_REQUEST_ID and text == _printable(text, len(text)):
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


class BodyTooLarge(Exception):
    """The request body is larger than the service accepts."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"The request body is larger than {limit} bytes.")
        self.limit = limit


async def read_body(request: Request, limit: int) -> bytes:
    """The whole body, refusing more than ``limit`` bytes without buffering them.

    When this raises, the rest of the body is left unread; uvicorn discards it after the
    answer, so the client still reads the error instead of a reset connection.
    """
    declared = ascii_int(request.headers.get("content-length", ""))
    if declared is not None and declared > limit:
        raise BodyTooLarge(limit)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge(limit)
        chunks.append(chunk)
    return b"".join(chunks)


def protected_app(
    *,
    routes: Sequence[BaseRoute],
    validator: TokenValidator,
    audience: str,
    challenge_params: Mapping[str, str],
    on_error: ErrorRenderer,
    headers: Middleware,
    exception_handlers: Mapping[Any, Callable[..., Any]],
    on_shutdown: Callable[[], None],
) -> Starlette:
    """A toy resource: ``headers`` outermost, then tokenguard (Azure's bare challenge,
    no realm; the lab closes the validator, not the app), then the routes.
    ``on_shutdown`` runs when the app stops (closing its database).

    ``validator`` must accept this resource's ``audience`` only (with or without a
    trailing slash): a token for another resource must never reach the routes. Its
    issuers must pass ``require_roles_or_scopes=False``: tokens for Azure resources carry
    neither ``roles`` nor ``scp``, and the resource authorizes by object id (RBAC).
    """
    others = {a for issuer in validator.issuers for a in issuer.audiences}
    others = {a for a in others if a.rstrip("/") != audience.rstrip("/")}
    if others:
        raise ValueError(f"the validator also accepts {sorted(others)}, not meant for {audience}")
    if any(issuer.require_roles_or_scopes for issuer in validator.issuers):
        raise ValueError(
            f"{audience} authorizes by object id and its tokens carry no roles: "
            "trust its issuer with Issuer(..., require_roles_or_scopes=False)"
        )

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        try:
            yield
        finally:
            on_shutdown()

    app = Starlette(
        routes=list(routes),
        middleware=[
            headers,
            Middleware(
                TokenGuardMiddleware,
                validator=validator,
                realm=None,
                challenge_params=challenge_params,
                on_error=on_error,
                close_validator=False,
            ),
        ],
        exception_handlers=dict(exception_handlers),
        lifespan=lifespan,
    )
    app.router.redirect_slashes = False
    return app
