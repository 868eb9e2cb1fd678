"""FastAPI integration: dependencies that return the caller's :class:`Identity`.

    guard = TokenGuard(validator)
    app = FastAPI(lifespan=guard.lifespan)

    @app.get("/secrets/{name}")
    async def read(name: str, who: Identity = Security(guard.requires(roles=["Secrets.Read"]))):
        ...

Every dependency is a FastAPI security scheme (HTTP bearer, JWT), so ``/docs`` shows
the Authorize button and a lock on each protected route. The dependencies work with
:class:`~tokenguard.TokenGuardMiddleware` installed (they reuse the identity it
attached) and without it (they validate the bearer token themselves through the same
:class:`~tokenguard.TokenValidator`, given here or found on ``app.state``).

Failures raise :class:`TokenGuardHTTPException` (an ``HTTPException``) carrying the
RFC 6750 ``WWW-Authenticate`` challenge; :func:`add_error_handler` renders them with
the same flat JSON body the middleware sends.
"""

from collections.abc import Iterator, Mapping
from contextlib import AbstractAsyncContextManager
from typing import Any, Unpack

try:
    from fastapi import FastAPI, HTTPException
    from fastapi.openapi.models import HTTPBearer as HTTPBearerModel
    from fastapi.security import SecurityScopes
    from fastapi.security.base import SecurityBase
except ImportError:  # tested by hiding fastapi from sys.modules
    raise ImportError(
        "tokenguard.fastapi needs FastAPI: pip install 'tokenguard-asgi[fastapi]'"
    ) from None
from starlette.exceptions import WebSocketException
from starlette.requests import HTTPConnection, Request
from starlette.responses import JSONResponse, Response

from ._authz import (
    CHALLENGE_SCOPE_KEY,
    IDENTITY_SCOPE_KEY,
    Requirement,
    RequirementOptions,
    attach_identity,
    build_requirement,
    verified_by,
)
from ._errors import (
    InsufficientScope,
    MissingToken,
    Reason,
    TokenGuardError,
)
from ._header import authorization_value, bearer_credentials
from ._identity import Identity
from ._responses import (
    DEFAULT_REALM,
    error_body,
    error_headers,
    log_rejection,
    websocket_close_code,
)
from ._validator import TokenValidator
from .readiness import STATE_KEY
from .readiness import lifespan as validator_lifespan

__all__ = [
    "STATE_KEY",
    "IdentityDependency",
    "OptionalIdentityDependency",
    "RequirementDependency",
    "TokenGuard",
    "TokenGuardHTTPException",
    "add_error_handler",
    "add_openapi_responses",
]


class TokenGuardHTTPException(HTTPException):
    """A tokenguard rejection as a FastAPI ``HTTPException``.

    ``detail`` is ``{"error": ..., "error_description": ...}`` and ``headers`` carry the
    RFC 6750 challenge (or ``Retry-After`` for 503). ``.error`` is the original error.
    """

    def __init__(self, error: TokenGuardError, headers: dict[str, str]) -> None:
        super().__init__(status_code=error.status_code, detail=error_body(error), headers=headers)
        self.error = error


def add_error_handler(app: FastAPI) -> None:
    """Render :class:`TokenGuardHTTPException` as the middleware does (flat JSON body).

    Without it FastAPI's default handler nests the body under ``"detail"``; status and
    headers are the same either way.
    """

    async def handle(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, TokenGuardHTTPException)
        return JSONResponse(error_body(exc.error), status_code=exc.status_code, headers=exc.headers)

    app.add_exception_handler(TokenGuardHTTPException, handle)


class TokenGuard:
    """FastAPI dependencies backed by one :class:`TokenValidator`.

    ``validator`` may be omitted: each request then uses ``app.state.tokenguard_validator``
    (set it yourself, or let :attr:`lifespan` of a guard that has one set it), else the
    validator of the :class:`~tokenguard.TokenGuardMiddleware` that authenticated it.
    ``realm`` and ``challenge_params`` shape the ``WWW-Authenticate`` challenge, unless a
    middleware with a custom realm or challenge parameters runs in front (its settings
    are then used, so both answer alike).
    ``scheme_name`` and ``description`` appear in the OpenAPI security scheme.
    ``strict_start=True`` makes :meth:`lifespan` fail the startup when the keys cannot
    be loaded (by default the app starts and answers 503 until they arrive).
    """

    def __init__(
        self,
        validator: TokenValidator | None = None,
        *,
        realm: str | None = DEFAULT_REALM,
        challenge_params: Mapping[str, str] | None = None,
        scheme_name: str = "bearer",
        description: str | None = "Azure managed-identity or OIDC access token (JWT)",
        strict_start: bool = False,
    ) -> None:
        self.validator = validator
        self.realm = realm
        self.challenge_params = dict(challenge_params or {})
        self.scheme_name = scheme_name
        self.description = description
        self.strict_start = strict_start
        #: ``Depends(guard.identity)``: the verified :class:`Identity`, else 401.
        #: ``Security(guard.identity, scopes=[...])`` also requires those roles/scopes.
        self.identity = IdentityDependency(self)
        #: ``Depends(guard.optional_identity)``: the :class:`Identity`, or ``None`` when
        #: no token was sent (a bad token is still 401).
        self.optional_identity = OptionalIdentityDependency(self)

    def requires(
        self, requirement: Requirement | None = None, /, **options: Unpack[RequirementOptions]
    ) -> "RequirementDependency":
        """A dependency returning the :class:`Identity` if it meets the requirement, else 403.

        Pass a :class:`~tokenguard.Requirement` or its keyword arguments (not both).
        """
        return RequirementDependency(self, build_requirement(requirement, options))

    def lifespan(self, app: Any) -> AbstractAsyncContextManager[None]:
        """``FastAPI(lifespan=guard.lifespan)``: warm keys at startup, close at shutdown.

        Needs a guard built with a validator; also sets ``app.state.tokenguard_validator``.
        Keys that cannot be loaded fail the startup when the guard has ``strict_start``.
        """
        if self.validator is None:
            raise RuntimeError("TokenGuard.lifespan needs a guard built with a validator")
        return validator_lifespan(self.validator, strict=self.strict_start)(app)

    # -- the work shared by every dependency --------------------------------------

    async def authenticate(self, conn: HTTPConnection) -> Identity | None:
        """The caller's identity, ``None`` without a bearer token; raises on a bad one.

        An identity already in the scope is reused only when this guard's own validator
        verified it (the middleware's or another guard's validator may trust other
        issuers or audiences); otherwise the guard verifies the token itself, a cache
        hit when it has seen it before. The first verified identity stays the request's
        ``request.user``; a guard with another validator only returns its own.
        """
        scope = conn.scope
        validator = self._validator(conn)
        own = verified_by(scope, validator)
        if own is not None:
            return own
        value = authorization_value(scope)
        entry = None if value is None else validator._cached_authorization(value)
        if entry is not None:
            identity = entry.identity
        else:
            token = bearer_credentials(scope, max_token_bytes=validator.max_token_bytes)
            if token is None:
                return None
            identity, entry = await validator.validate_credentials(token)
        if scope.get(IDENTITY_SCOPE_KEY) is None:
            # Later dependencies and get_identity(request) see it, as with the middleware.
            auth = None if entry is None else entry.request_auth(validator)
            attach_identity(scope, identity, auth, validator=validator)
        return identity

    def _validator(self, conn: HTTPConnection) -> TokenValidator:
        if self.validator is not None:
            return self.validator
        found = getattr(conn.app.state, STATE_KEY, None)
        if isinstance(found, TokenValidator):
            return found
        found = getattr(conn.scope.get("user"), "verified_by", None)  # the middleware's
        if isinstance(found, TokenValidator):
            return found
        raise RuntimeError(
            "TokenGuard has no validator: pass one, set app.state.tokenguard_validator,"
            " or install TokenGuardMiddleware"
        )

    def reject(
        self, conn: HTTPConnection, exc: TokenGuardError, identity: Identity | None = None
    ) -> Exception:
        """The exception that answers ``exc`` the RFC 6750 way (HTTP or WebSocket).

        Logs the rejection (once), naming ``identity`` when a verified caller was refused.
        """
        log_rejection(exc, identity)
        if conn.scope["type"] == "websocket":
            return WebSocketException(code=websocket_close_code(exc), reason=exc.description)
        realm, params = conn.scope.get(CHALLENGE_SCOPE_KEY, (self.realm, self.challenge_params))
        return TokenGuardHTTPException(exc, error_headers(exc, realm, params))


def _check_security_scopes(identity: Identity, required: list[str]) -> None:
    # Security(..., scopes=[...]) names permissions: app roles or delegated scopes,
    # like Starlette's request.auth.scopes.
    missing = frozenset(required) - identity.permissions
    if missing:
        reason: Reason = "missing_scope" if identity.kind == "user" else "missing_role"
        raise InsufficientScope("missing permission", reason=reason, required=frozenset(required))


class _GuardDependency(SecurityBase):
    """A FastAPI security scheme (HTTP bearer) whose call runs the guard."""

    def __init__(self, guard: TokenGuard) -> None:
        self.model = HTTPBearerModel(bearerFormat="JWT", description=guard.description)
        self.scheme_name = guard.scheme_name
        self.guard = guard

    async def _identity(self, conn: HTTPConnection, scopes: SecurityScopes) -> Identity:
        guard = self.guard
        identity = None
        try:
            identity = await guard.authenticate(conn)
            if identity is None:
                raise MissingToken
            _check_security_scopes(identity, scopes.scopes)
            self._check(identity)
        except TokenGuardError as exc:
            raise guard.reject(conn, exc, identity) from None
        return identity

    def _check(self, identity: Identity) -> None:
        """Further conditions of a subclass; raise :class:`InsufficientScope`."""


class IdentityDependency(_GuardDependency):
    """Returns the verified :class:`Identity`; 401 with the challenge when absent."""

    async def __call__(self, conn: HTTPConnection, security_scopes: SecurityScopes) -> Identity:
        return await self._identity(conn, security_scopes)


class OptionalIdentityDependency(_GuardDependency):
    """Returns the :class:`Identity`, or ``None`` when no bearer token was sent."""

    async def __call__(
        self, conn: HTTPConnection, security_scopes: SecurityScopes
    ) -> Identity | None:
        guard = self.guard
        identity = None
        try:
            identity = await guard.authenticate(conn)
            if identity is not None:
                _check_security_scopes(identity, security_scopes.scopes)
        except TokenGuardError as exc:
            raise guard.reject(conn, exc, identity) from None
        return identity


class RequirementDependency(_GuardDependency):
    """Returns the :class:`Identity` when it meets a :class:`Requirement`; else 401/403."""

    def __init__(self, guard: TokenGuard, requirement: Requirement) -> None:
        super().__init__(guard)
        self.requirement = requirement

    def _check(self, identity: Identity) -> None:
        self.requirement.check(identity)

    async def __call__(self, conn: HTTPConnection, security_scopes: SecurityScopes) -> Identity:
        return await self._identity(conn, security_scopes)


# -- OpenAPI ----------------------------------------------------------------------------

_ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"error": {"type": "string"}, "error_description": {"type": "string"}},
    "required": ["error", "error_description"],
}
_CHALLENGE_HEADER: dict[str, Any] = {
    "WWW-Authenticate": {
        "description": "The RFC 6750 bearer challenge (realm, error, error_description)",
        "schema": {"type": "string"},
    }
}


def add_openapi_responses(app: FastAPI) -> None:
    """List each guarded operation's refusals in ``/openapi.json`` (and ``/docs``): 401
    (no or bad bearer token), and 403 naming what the caller must hold when a
    :meth:`TokenGuard.requires` or ``Security(..., scopes=[...])`` applies.

    Dependencies cannot add responses to an operation themselves, so this wraps
    ``app.openapi``; call it once, after the routes are added or before the first
    ``/openapi.json`` request. Responses a route declares itself are kept.
    """
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = build()
        _document_guards(app, schema)
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


def _api_routes(app: FastAPI) -> Iterator[Any]:
    """The app's API routes, included routers' routes among them."""
    from fastapi import routing
    from fastapi.openapi import utils

    contexts = getattr(routing, "iter_route_contexts", None)
    api_route_of = getattr(utils, "_get_api_route_for_openapi", None)
    if contexts is not None and api_route_of is not None:
        # FastAPI 0.16x keeps included routers as routes of their own and resolves
        # their effective routes lazily, as its own OpenAPI generator does here.
        for context in contexts(app.routes):
            route = api_route_of(context)
            if route is not None:
                yield route
        return
    for route in app.routes:  # earlier FastAPI copies included routes into the app
        if isinstance(route, routing.APIRoute):
            yield route


def _document_guards(app: FastAPI, schema: dict[str, Any]) -> None:
    paths = schema.get("paths", {})
    for route in _api_routes(app):
        if not route.include_in_schema:
            continue
        needs = _guard_needs(route.dependant)
        if needs is None:
            continue
        for method in route.methods or ():
            operation = paths.get(route.path_format, {}).get(method.lower())
            if operation is None:
                continue
            responses = operation.setdefault("responses", {})
            responses.setdefault("401", _refusal("Missing, malformed or invalid bearer token"))
            if needs:
                responses.setdefault("403", _refusal("The caller lacks: " + "; ".join(needs)))


def _refusal(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "headers": _CHALLENGE_HEADER,
        "content": {"application/json": {"schema": _ERROR_SCHEMA}},
    }


def _guard_needs(dependant: Any) -> list[str] | None:
    """What the guards among ``dependant``'s dependencies require, as phrases (empty: a
    verified caller is enough); ``None`` when no guard protects it."""
    needs: list[str] = []
    guarded = False
    pending = list(dependant.dependencies)
    while pending:
        dependency = pending.pop()
        pending.extend(dependency.dependencies)
        call = dependency.call
        if not isinstance(call, _GuardDependency):
            continue
        guarded = True
        scopes = getattr(dependency, "own_oauth_scopes", None) or getattr(
            dependency, "security_scopes", None
        )
        if scopes:
            needs.append("each of " + ", ".join(sorted(scopes)) + " as a role or scope")
        if isinstance(call, RequirementDependency):
            needs.extend(_requirement_phrases(call.requirement))
    return needs if guarded else None


def _requirement_phrases(need: Requirement) -> list[str]:
    phrases = []
    for label, values in (
        ("roles", need.roles),
        ("one of the roles", need.any_role),
        ("scopes", need.scopes),
        ("roles or scopes", need.permissions),
    ):
        if values:
            phrases.append(f"{label} " + ", ".join(sorted(values)))
    if need._about_caller:
        phrases.append("to be an allowed caller")
    return phrases
