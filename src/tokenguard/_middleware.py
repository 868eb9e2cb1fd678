"""Pure ASGI middleware: bearer token in, identity (or an RFC 6750 answer) out."""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Iterable, Mapping
from types import MappingProxyType

from starlette.authentication import AuthCredentials, UnauthenticatedUser
from starlette.requests import HTTPConnection
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ._authz import (
    CHALLENGE_SCOPE_KEY,
    IDENTITY_SCOPE_KEY,
    Requirement,
    attach_identity,
)
from ._errors import KeysUnavailable, MissingToken, TokenGuardError
from ._header import authorization_value, bearer_credentials
from ._identity import Identity
from ._responses import (
    DEFAULT_REALM,
    ErrorAnswers,
    error_headers,
    error_response,
    log_rejection,
    websocket_close_code,
)
from ._validator import TokenValidator
from .readiness import warm_up_at_startup

__all__ = ["ErrorRenderer", "TokenGuardMiddleware"]


ErrorRenderer = Callable[
    [HTTPConnection, TokenGuardError, dict[str, str]], Response | Awaitable[Response]
]
"""``renderer(conn, error, headers)``: build your own error response; include ``headers``."""


class TokenGuardMiddleware:
    """Authenticate every HTTP and WebSocket request with a bearer token.

    On success the scope carries ``tokenguard.identity`` (the :class:`Identity`),
    ``user`` (a :class:`TokenGuardUser`) and ``auth`` (roles and scopes as Starlette
    ``AuthCredentials``). Failures are answered per RFC 6750 before the app runs.
    On an excluded path, and for an anonymous caller when ``allow_anonymous`` is set,
    ``request.user`` is Starlette's ``UnauthenticatedUser``. Options are read-only
    once built; the validator's ``clock`` and ``observer`` are read on every request.

    Through the ASGI lifespan it loads the keys before the app starts (``warm_up``) and
    closes the validator at shutdown (``close_validator``). Keys that cannot be loaded
    are logged and the app starts, answering 503 until they arrive; with
    ``strict_start=True`` the startup fails instead (``lifespan.startup.failed``, whose
    message says why: the server does not start).
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        validator: TokenValidator,
        exclude_paths: Iterable[str] = (),
        allow_anonymous: bool = False,
        require: Requirement | None = None,
        realm: str | None = DEFAULT_REALM,
        challenge_params: Mapping[str, str] | None = None,
        allow_query_token: bool = False,
        on_error: ErrorRenderer | None = None,
        warm_up: bool = True,
        close_validator: bool = True,
        strict_start: bool = False,
    ) -> None:
        if isinstance(exclude_paths, str):
            raise TypeError("exclude_paths must be a collection of paths, not a str")
        if strict_start and not warm_up:
            raise ValueError("strict_start=True needs warm_up=True (it fails a failed warm-up)")
        self.app = app
        self.validator = validator
        #: The cache-hit lookup (the validator's cache is fixed for its lifetime).
        self._match = validator.cache.match_authorization
        excluded = list(exclude_paths)
        for entry in excluded:
            if not isinstance(entry, str) or not entry.startswith("/"):
                raise ValueError(f"exclude_paths entries are paths starting with '/': {entry!r}")
        self.exclude_paths = tuple(excluded)
        self._exclude_exact = frozenset(p for p in excluded if not p.endswith("*"))
        self._exclude_prefixes = tuple(p[:-1] for p in excluded if p.endswith("*"))
        self._excluding = bool(excluded)
        self.allow_anonymous = allow_anonymous
        self.require = require
        self.realm = realm
        self.challenge_params = MappingProxyType(dict(challenge_params or {}))
        self._challenge = (realm, self.challenge_params)
        # Per-route checks (``requires``) fall back to the default challenge: only a
        # custom one needs a place in the scope.
        self._custom_challenge = realm != DEFAULT_REALM or bool(self.challenge_params)
        # A cache hit needs nothing beyond the identity: no requirement to check and
        # no custom challenge to leave for per-route checks.
        self._plain = require is None and not self._custom_challenge
        self._answers = ErrorAnswers(realm, self.challenge_params)
        self.allow_query_token = allow_query_token
        self.on_error = on_error
        self.warm_up = warm_up
        self.close_validator = close_validator
        self.strict_start = strict_start
        self._built = True

    def __setattr__(self, name: str, value: object) -> None:
        if getattr(self, "_built", False):
            raise AttributeError(
                f"TokenGuardMiddleware options are read-only once built (tried to set {name})"
            )
        object.__setattr__(self, name, value)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # The common request on the fewest steps: HTTP, one Authorization header whose
        # value is a verified token's, within its time window (the cache's
        # match_authorization), no query token. Everything else takes the general path.
        if scope["type"] == "http" and not (self._excluding and self._excluded(scope)):
            value = authorization_value(scope)
            if value is not None:
                validator = self.validator
                entry = self._match(value, validator.clock())
                if entry is not None:
                    observer = validator.observer
                    if observer is not None:
                        observer.validation("valid", None, entry.identity.issuer, 0.0, True)
                    if not self._plain:
                        error = self._after_hit(entry.identity, scope)
                        if error is not None:
                            await self._reject(error, scope, receive, send, entry.identity)
                            return
                    credentials = entry.credentials
                    if credentials is None:
                        credentials = entry.request_auth(validator)[1]
                    # Three stores, as few as Starlette's contract allows: the user
                    # carries its validator (a fourth key can push the scope's dict
                    # past a resize).
                    scope[IDENTITY_SCOPE_KEY] = entry.identity
                    scope["user"] = entry.user
                    scope["auth"] = credentials
                    await self.app(scope, receive, send)
                    return
        await self._general(scope, receive, send)

    def _after_hit(self, identity: Identity, scope: Scope) -> TokenGuardError | None:
        """A cache hit's optional steps: custom challenge, requirement."""
        if self._custom_challenge:
            scope[CHALLENGE_SCOPE_KEY] = self._challenge
        if self.require is not None:
            try:
                self.require.check(identity)
            except TokenGuardError as exc:
                return exc
        return None

    def _excluded(self, scope: Scope) -> bool:
        # Matched as routes are: relative to the app's root_path (a server's --root-path,
        # a Mount), so "/healthz" means the app's /healthz wherever it is deployed.
        # As Starlette strips it: only at a "/" boundary ("/api" is not a root of "/apix").
        path: str = scope["path"]
        root = scope.get("root_path")
        if root and path.startswith(root) and path[len(root) : len(root) + 1] in ("", "/"):
            path = path[len(root) :]
        return path in self._exclude_exact or (
            bool(self._exclude_prefixes) and path.startswith(self._exclude_prefixes)
        )

    async def _general(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind != "http" and kind != "websocket":
            if kind == "lifespan":
                await self._lifespan(scope, receive, send)
            else:
                await self.app(scope, receive, send)
            return
        if self._excluding and self._excluded(scope):
            # As under Starlette's AuthenticationMiddleware, request.user always exists
            # (unless an outer middleware authenticated the request already).
            scope.setdefault("user", UnauthenticatedUser())
            scope.setdefault("auth", AuthCredentials())
            await self.app(scope, receive, send)
            return
        if self._custom_challenge:
            scope[CHALLENGE_SCOPE_KEY] = self._challenge
        identity = None
        try:
            token = bearer_credentials(
                scope,
                max_token_bytes=self.validator.max_token_bytes,
                allow_query_token=self.allow_query_token,
            )
            if token is None:
                if self.allow_anonymous:
                    scope["user"] = UnauthenticatedUser()
                    scope["auth"] = AuthCredentials()
                    await self.app(scope, receive, send)
                    return
                raise MissingToken
            identity, entry = await self.validator.validate_credentials(token)
            if self.require is not None:
                self.require.check(identity)
        except TokenGuardError as exc:
            await self._reject(exc, scope, receive, send, identity)
            return
        auth = None if entry is None else entry.request_auth(self.validator)
        attach_identity(scope, identity, auth, validator=self.validator)
        await self.app(scope, receive, send)

    # -- answers ----------------------------------------------------------------

    async def _reject(
        self,
        exc: TokenGuardError,
        scope: Scope,
        receive: Receive,
        send: Send,
        identity: Identity | None = None,
    ) -> None:
        log_rejection(exc, identity)
        if self.on_error is not None:
            conn = HTTPConnection(scope, receive)
            result = self.on_error(conn, exc, error_headers(exc, self.realm, self.challenge_params))
            response = await result if inspect.isawaitable(result) else result
        elif scope["type"] == "http":
            await self._answers.send(exc, send)
            return
        else:
            response = error_response(exc, self.realm, self.challenge_params)
        if scope["type"] == "websocket":
            await self._reject_websocket(exc, response, scope, receive, send)
        else:
            await response(scope, receive, send)

    @staticmethod
    async def _reject_websocket(
        exc: TokenGuardError, response: Response, scope: Scope, receive: Receive, send: Send
    ) -> None:
        if "websocket.http.response" in scope.get("extensions", {}):
            # The server can send an HTTP answer instead of the upgrade: use it.
            await response(scope, receive, send)
            return
        code = websocket_close_code(exc)
        await send({"type": "websocket.close", "code": code, "reason": exc.description})

    # -- lifespan ---------------------------------------------------------------

    async def _lifespan(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Warm the keys before the app sees ``lifespan.startup``; a strict start that
        cannot load them answers ``lifespan.startup.failed`` itself (the app never
        started, so it has nothing to shut down) and raises, as Starlette's router does."""
        first = await receive()
        if first["type"] == "lifespan.startup" and self.warm_up:
            try:
                await warm_up_at_startup(self.validator, strict=self.strict_start)
            except KeysUnavailable as exc:
                reason = f"tokenguard: keys could not be loaded at startup: {exc}"
                await send({"type": "lifespan.startup.failed", "message": reason})
                raise
        await self.app(scope, self._lifespan_receive(first, receive), send)

    def _lifespan_receive(self, first: Message, receive: Receive) -> Receive:
        pending = [first]

        async def wrapped() -> Message:
            if pending:
                return pending.pop()
            message = await receive()
            if message["type"] == "lifespan.shutdown" and self.close_validator:
                await self.validator.aclose()
            return message

        return wrapped
