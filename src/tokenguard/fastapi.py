"""FastAPI integration: dependencies that return the caller's :class:`Identity`.

    guard = TokenGuard(validator)
    app = FastAPI(lifespan=guard.lifespan)

    @app.get("/secrets/{name}")
    async def read(name: str, who: Identity = Security(guard.requires(roles=["Secrets.Read"]))):
        ...

Every dependency is a FastAPI security scheme (HTTP bearer, JWT), so ``/docs`` shows
the Authorize button and a lock on each protected route. A guard given
``oauth2=OAuth2AuthorizationCode(...)`` describes itself as OAuth2 authorization code
instead, so Swagger UI signs users in (with PKCE) rather than asking for a pasted token.
The dependencies work with
:class:`~tokenguard.TokenGuardMiddleware` installed (they reuse the identity it
attached) and without it (they validate the bearer token themselves through the same
:class:`~tokenguard.TokenValidator`, given here or found on ``app.state``).

Failures raise :class:`TokenGuardHTTPException` (an ``HTTPException``) carrying the
RFC 6750 ``WWW-Authenticate`` challenge; :func:`add_error_handler` renders them with
the same flat JSON body the middleware sends.
"""

import re
import types
from collections.abc import Iterable, Iterator, Mapping
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Any, Final, Unpack

import httpx

try:
    from fastapi import FastAPI, HTTPException
    from fastapi.openapi.models import HTTPBearer as HTTPBearerModel
    from fastapi.openapi.models import OAuth2 as OAuth2Model
    from fastapi.openapi.models import OAuthFlowAuthorizationCode, OAuthFlows
    from fastapi.openapi.models import SecurityBase as SecuritySchemeModel
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
from ._config import check_url
from ._errors import (
    InsufficientScope,
    MissingToken,
    Reason,
    TokenGuardError,
)
from ._fetch import FetchError, fetch_json
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
    "OAuth2AuthorizationCode",
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


#: How long :meth:`OAuth2AuthorizationCode.discover` waits for the discovery document.
DEFAULT_DISCOVERY_TIMEOUT: Final = 10.0
#: Largest discovery document :meth:`OAuth2AuthorizationCode.discover` reads.
MAX_DISCOVERY_BYTES: Final = 256 * 1024
_SCOPE_NAME: Final = re.compile(r"[!#-\[\]-~]+")  # RFC 6749 scope-token: no spaces, " or \\


@dataclass(frozen=True, kw_only=True)
class OAuth2AuthorizationCode:
    """How users sign in to the API: the OAuth2 authorization code flow (with PKCE).

    ``authorization_url`` and ``token_url`` are the issuer's ``authorization_endpoint``
    and ``token_endpoint`` (:meth:`from_discovery` reads them). ``scopes`` maps each
    delegated scope the API exposes, as it appears in ``scp`` (``Secrets.Read``), to a
    description. Entra wants scopes requested by their full name, the API's Application
    ID URI and the scope (``api://my-api/Secrets.Read``): ``scope_prefix``
    (``"api://my-api/"``) is put in front of each name in the OpenAPI document, so
    Swagger UI asks for the full name while routes check the short one.
    """

    authorization_url: str
    token_url: str
    scopes: Mapping[str, str] = field(default_factory=dict)
    scope_prefix: str = ""
    refresh_url: str | None = None

    def __post_init__(self) -> None:
        check_url(self.authorization_url, "authorization_url")
        check_url(self.token_url, "token_url")
        if self.refresh_url is not None:
            check_url(self.refresh_url, "refresh_url")
        scopes = dict(self.scopes)
        for name, description in scopes.items():
            if not isinstance(name, str) or not _SCOPE_NAME.fullmatch(name):
                raise ValueError(f"scope {name!r} is not an OAuth2 scope name")
            if not isinstance(description, str):
                raise ValueError(f"the description of scope {name!r} must be a string")
        if self.scope_prefix and not _SCOPE_NAME.fullmatch(self.scope_prefix):
            raise ValueError("scope_prefix must not contain spaces, quotes or backslashes")
        object.__setattr__(self, "scopes", types.MappingProxyType(scopes))

    def scope_uri(self, scope: str) -> str:
        """The name Swagger UI requests for ``scope``: prefixed, unless already a URI."""
        return scope if "://" in scope else self.scope_prefix + scope

    @property
    def openapi_model(self) -> OAuth2Model:
        """The OpenAPI security scheme (``type: oauth2``, one ``authorizationCode`` flow)."""
        flow = OAuthFlowAuthorizationCode(
            authorizationUrl=self.authorization_url,
            tokenUrl=self.token_url,
            refreshUrl=self.refresh_url,
            scopes={self.scope_uri(name): text for name, text in self.scopes.items()},
        )
        return OAuth2Model(flows=OAuthFlows(authorizationCode=flow))

    def swagger_ui_init_oauth(
        self, client_id: str, scopes: Iterable[str] | None = None
    ) -> dict[str, Any]:
        """``FastAPI(swagger_ui_init_oauth=...)`` for a public client ``client_id``: PKCE
        on, and ``scopes`` (default: all of them) preselected in the Authorize dialog."""
        chosen = self.scopes if scopes is None else scopes
        return {
            "clientId": client_id,
            "usePkceWithAuthorizationCodeGrant": True,
            "scopes": " ".join(self.scope_uri(name) for name in chosen),
        }

    @classmethod
    def from_discovery(
        cls,
        document: Mapping[str, Any],
        *,
        scopes: Mapping[str, str],
        scope_prefix: str = "",
    ) -> "OAuth2AuthorizationCode":
        """Read ``authorization_endpoint`` and ``token_endpoint`` of an OpenID Connect
        discovery document (Entra's v2 one for ``scp``-style scopes)."""
        endpoints = [document.get(key) for key in ("authorization_endpoint", "token_endpoint")]
        if not all(isinstance(url, str) and url for url in endpoints):
            raise ValueError("no authorization_endpoint or token_endpoint in the document")
        authorization_url, token_url = (str(url) for url in endpoints)
        return cls(
            authorization_url=authorization_url,
            token_url=token_url,
            scopes=scopes,
            scope_prefix=scope_prefix,
        )

    @classmethod
    async def discover(
        cls,
        discovery_url: str,
        *,
        scopes: Mapping[str, str],
        scope_prefix: str = "",
        http_client: httpx.AsyncClient | None = None,
        timeout: float = DEFAULT_DISCOVERY_TIMEOUT,
    ) -> "OAuth2AuthorizationCode":
        """:meth:`from_discovery` of the document at ``discovery_url`` (a bounded GET).

        Raises ``ValueError`` naming the URL when it cannot be fetched or lacks the
        endpoints. ``http_client`` is used when given (and left open).
        """
        check_url(discovery_url, "discovery_url")
        client = http_client or httpx.AsyncClient(follow_redirects=False)
        try:
            result = await fetch_json(
                client, discovery_url, timeout=timeout, max_bytes=MAX_DISCOVERY_BYTES
            )
        except FetchError as exc:
            raise ValueError(f"discovery document {discovery_url}: {exc}") from exc
        finally:
            if http_client is None:
                await client.aclose()
        try:
            return cls.from_discovery(result.document, scopes=scopes, scope_prefix=scope_prefix)
        except ValueError as exc:
            raise ValueError(f"discovery document {discovery_url}: {exc}") from None


class TokenGuard:
    """FastAPI dependencies backed by one :class:`TokenValidator`.

    ``validator`` may be omitted: each request then uses ``app.state.tokenguard_validator``
    (set it yourself, or let :attr:`lifespan` of a guard that has one set it), else the
    validator of the :class:`~tokenguard.TokenGuardMiddleware` that authenticated it.
    ``realm`` and ``challenge_params`` shape the ``WWW-Authenticate`` challenge, unless a
    middleware with a custom realm or challenge parameters runs in front (its settings
    are then used, so both answer alike).
    ``scheme_name`` and ``description`` appear in the OpenAPI security scheme: HTTP bearer
    (named ``bearer`` by default), or OAuth2 authorization code (named ``oauth2``) when
    ``oauth2`` is given. ``oauth2`` may also be set later (e.g. after reading the
    discovery document at startup): the OpenAPI document reads it when first built.
    ``strict_start=True`` makes :meth:`lifespan` fail the startup when the keys cannot
    be loaded (by default the app starts and answers 503 until they arrive).
    """

    def __init__(
        self,
        validator: TokenValidator | None = None,
        *,
        realm: str | None = DEFAULT_REALM,
        challenge_params: Mapping[str, str] | None = None,
        scheme_name: str | None = None,
        description: str | None = "Azure managed-identity or OIDC access token (JWT)",
        strict_start: bool = False,
        oauth2: OAuth2AuthorizationCode | None = None,
    ) -> None:
        self.validator = validator
        self.realm = realm
        self.challenge_params = dict(challenge_params or {})
        self._scheme_name = scheme_name
        #: The sign-in flow the OpenAPI document names; ``None``: HTTP bearer.
        self.oauth2 = oauth2
        self.description = description
        self.strict_start = strict_start
        #: ``Depends(guard.identity)``: the verified :class:`Identity`, else 401.
        #: ``Security(guard.identity, scopes=[...])`` also requires those roles/scopes.
        self.identity = IdentityDependency(self)
        #: ``Depends(guard.optional_identity)``: the :class:`Identity`, or ``None`` when
        #: no token was sent (a bad token is still 401).
        self.optional_identity = OptionalIdentityDependency(self)

    @property
    def scheme_name(self) -> str:
        """The security scheme's name in the OpenAPI document."""
        if self._scheme_name is not None:
            return self._scheme_name
        return "bearer" if self.oauth2 is None else "oauth2"

    def security_scheme(self) -> SecuritySchemeModel:
        """The OpenAPI security scheme every dependency of this guard declares."""
        if self.oauth2 is not None:
            scheme = self.oauth2.openapi_model
            scheme.description = self.description
            return scheme
        return HTTPBearerModel(bearerFormat="JWT", description=self.description)

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
    """A FastAPI security scheme (the guard's: HTTP bearer or OAuth2) whose call runs the
    guard. ``model`` and ``scheme_name`` are read from the guard when FastAPI builds the
    OpenAPI document, so a guard's ``oauth2`` set at startup still shows."""

    def __init__(self, guard: TokenGuard) -> None:
        self.guard = guard

    # FastAPI only reads these two; they follow the guard instead of being copies.
    @property
    def model(self) -> SecuritySchemeModel:  # type: ignore[override]
        return self.guard.security_scheme()

    @property
    def scheme_name(self) -> str:  # type: ignore[override]
        return self.guard.scheme_name

    async def _identity(
        self, conn: HTTPConnection, scopes: SecurityScopes, *, required: bool = True
    ) -> Identity | None:
        """The verified caller meeting this dependency's conditions; without a bearer
        token ``None`` unless ``required`` (then 401)."""
        guard = self.guard
        identity = None
        try:
            identity = await guard.authenticate(conn)
            if identity is None:
                if required:
                    raise MissingToken
                return None
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
        identity = await self._identity(conn, security_scopes)
        assert identity is not None  # required: no token is a 401
        return identity


class OptionalIdentityDependency(_GuardDependency):
    """Returns the :class:`Identity`, or ``None`` when no bearer token was sent."""

    async def __call__(
        self, conn: HTTPConnection, security_scopes: SecurityScopes
    ) -> Identity | None:
        return await self._identity(conn, security_scopes, required=False)


class RequirementDependency(IdentityDependency):
    """Returns the :class:`Identity` when it meets a :class:`Requirement`; else 401/403."""

    def __init__(self, guard: TokenGuard, requirement: Requirement) -> None:
        super().__init__(guard)
        self.requirement = requirement

    def _check(self, identity: Identity) -> None:
        self.requirement.check(identity)


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

    For a guard with ``oauth2``, the operation's ``security`` also lists the delegated
    scopes the route needs (``requires(scopes=...)``, and ``permissions`` the API exposes
    as scopes), by the full names Swagger UI requests.

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
            _document_scopes(operation, route.dependant)
            responses = operation.setdefault("responses", {})
            responses.setdefault("401", _refusal("Missing, malformed or invalid bearer token"))
            if needs:
                responses.setdefault("403", _refusal("The caller lacks: " + "; ".join(needs)))


def _document_scopes(operation: dict[str, Any], dependant: Any) -> None:
    """Name the OAuth2 scopes each OAuth2 guard of the route checks in its ``security``.

    FastAPI lists ``Security(..., scopes=[...])`` by the short names given there; they
    are replaced by the full names Swagger UI requests.
    """
    wanted: dict[str, list[str]] = {}
    flows: dict[str, OAuth2AuthorizationCode] = {}
    for dependency, call in _guard_dependencies(dependant):
        oauth2 = call.guard.oauth2
        if oauth2 is None:
            continue
        flows[call.guard.scheme_name] = oauth2
        names = _declared_scopes(dependency)
        if isinstance(call, RequirementDependency):
            need = call.requirement
            names += sorted(need.scopes)
            names += sorted(p for p in need.permissions if p in oauth2.scopes)
        scopes = wanted.setdefault(call.guard.scheme_name, [])
        scopes.extend(n for n in map(oauth2.scope_uri, names) if n not in scopes)
    if not wanted:
        return
    security = operation.setdefault("security", [])
    for entry in security:
        for scheme in entry.keys() & wanted.keys():
            scopes = wanted.pop(scheme)
            given = map(flows[scheme].scope_uri, entry[scheme])
            entry[scheme] = scopes + [name for name in given if name not in scopes]
    security.extend({scheme: scopes} for scheme, scopes in wanted.items())


def _guard_dependencies(dependant: Any) -> Iterator[tuple[Any, "_GuardDependency"]]:
    """Every dependency among ``dependant``'s (nested) ones that is a guard's."""
    pending = list(dependant.dependencies)
    while pending:
        dependency = pending.pop()
        pending.extend(dependency.dependencies)
        if isinstance(dependency.call, _GuardDependency):
            yield dependency, dependency.call


def _declared_scopes(dependency: Any) -> list[str]:
    """The scopes of ``Security(..., scopes=[...])`` on this dependency itself."""
    return list(
        getattr(dependency, "own_oauth_scopes", None)
        or getattr(dependency, "security_scopes", None)  # FastAPI before 0.120
        or []
    )


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
    for dependency, call in _guard_dependencies(dependant):
        guarded = True
        scopes = _declared_scopes(dependency)
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
