"""Authorization on a verified identity: roles, scopes, permissions and caller allow-lists.

A :class:`Requirement` can be applied to a whole app (middleware option) or per
route (:func:`requires`). Failures raise :class:`InsufficientScope` (403).

:func:`requires` is Starlette's ``requires`` (``starlette/authentication.py``) with
tokenguard's answers: it checks its arguments and finds the ``request`` or ``websocket``
parameter when it decorates, and builds one of three wrappers as Starlette does: a
websocket one (closes before accepting), an async one, and a sync one that stays sync
so the router still runs the endpoint in the threadpool.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Iterable, Mapping, MutableMapping
from dataclasses import dataclass, field
from typing import Any, Final, ParamSpec, TypedDict, TypeVar, Unpack, get_args

from starlette.authentication import AuthCredentials
from starlette.requests import HTTPConnection, Request
from starlette.responses import JSONResponse
from starlette.websockets import WebSocket

from ._config import ascii_fold, is_async_callable, refuse_lone_string
from ._errors import InsufficientScope, MissingToken, Reason, TokenGuardError
from ._identity import Identity, IdentityKind, TokenGuardUser, starlette_auth
from ._responses import DEFAULT_REALM, WS_POLICY_VIOLATION, error_response, log_rejection

__all__ = [
    "CHALLENGE_SCOPE_KEY",
    "IDENTITY_SCOPE_KEY",
    "Requirement",
    "RequirementOptions",
    "attach_identity",
    "build_requirement",
    "get_identity",
    "requires",
    "verified_by",
]

#: Where the middleware puts the :class:`Identity` in the ASGI scope.
IDENTITY_SCOPE_KEY = "tokenguard.identity"
#: Where the middleware leaves its challenge settings for per-route checks.
CHALLENGE_SCOPE_KEY = "tokenguard.challenge"

_P = ParamSpec("_P")
_C = TypeVar("_C", bound=HTTPConnection)
_KINDS: Final[frozenset[str]] = frozenset(get_args(IdentityKind))


def _strings(name: str, values: object) -> frozenset[str]:
    """``values`` as a set of strings; a lone string (or anything else) is a TypeError."""
    refuse_lone_string(name, values)
    if isinstance(values, bytes | bytearray | memoryview) or not isinstance(values, Iterable):
        raise TypeError(f"{name} must be a collection of strings, not {type(values).__name__}")
    items = tuple(values)
    for item in items:
        if not isinstance(item, str):
            raise TypeError(
                f"{name} must be a collection of strings, not holding {type(item).__name__}"
            )
    return frozenset(items)


def _folded(name: str, values: object) -> frozenset[str] | None:
    if values is None:
        return None
    return frozenset(ascii_fold(v) for v in _strings(name, values))


class RequirementOptions(TypedDict, total=False):
    """:class:`Requirement`'s keyword arguments, for the helpers that build one."""

    roles: Iterable[str]
    any_role: Iterable[str]
    scopes: Iterable[str]
    permissions: Iterable[str]
    mi_resource_ids: Iterable[str] | None
    app_ids: Iterable[str] | None
    object_ids: Iterable[str] | None
    issuers: Iterable[str] | None
    tenants: Iterable[str] | None
    kinds: Iterable[IdentityKind] | None
    allow_guest_users: bool


@dataclass(frozen=True, slots=True, init=False)
class Requirement:
    """What a caller must have. Every condition given must hold.

    - ``roles``: every one of these app roles; ``any_role``: at least one of these.
    - ``scopes``: every one of these delegated scopes.
    - ``permissions``: every one of these, each held as a role or a scope
      (:attr:`Identity.permissions`, which is Starlette's ``request.auth.scopes``).
    - ``mi_resource_ids`` / ``app_ids`` / ``object_ids``: caller allow-lists; when any is
      given the caller must match at least one entry of one of them. Compared
      ASCII-case-insensitively (Azure resource ids and GUIDs are case-insensitive
      ASCII); other characters must match exactly.
    - ``issuers``: the token's ``iss`` must be one of these (exact strings).
    - ``tenants``: the token's ``tid`` must be one of these (ASCII-case-insensitive).
    - ``kinds``: accepted identity kinds (e.g. only ``"managed_identity"``).
    - ``allow_guest_users``: ``False`` refuses B2B guests of the Entra tenant
      (:attr:`Identity.is_guest`) with ``guest_not_allowed``. The default lets them pass:
      Entra already gives a guest only what its role assignments and consented scopes
      grant, and the other conditions still apply. (fastapi-azure-auth refuses guests by
      default, a choice for apps that grant every member of the tenant access.)

    Every other argument takes a collection of strings; a lone string is a TypeError.

    **Several trusted issuers.** An allow-list matches claims, and claims are only as
    good as the issuer that signed them: an object id or app id of one tenant says
    nothing about a token of another trusted issuer. Multi-tenant apps keep one app id
    in every tenant, and any trusted issuer that is not Entra ID can put any ``oid``,
    ``appid``, ``xms_mirid`` or ``tid`` it likes in its tokens. When the validator
    trusts more than one issuer (or a ``{tenantid}`` template), bind the allow-list:
    ``issuers=`` to the issuer its entries come from (what the validator verified the
    token against), or ``tenants=`` when every trusted issuer is Entra ID (which vouches
    for ``tid``)::

        Requirement(object_ids=[REPORTER_OID], issuers=["https://sts.windows.net/<tid>/"])

    Callers allowed from different issuers need a requirement each (e.g. one per route).
    """

    roles: frozenset[str]
    any_role: frozenset[str]
    scopes: frozenset[str]
    permissions: frozenset[str]
    mi_resource_ids: frozenset[str] | None
    app_ids: frozenset[str] | None
    object_ids: frozenset[str] | None
    issuers: frozenset[str] | None
    tenants: frozenset[str] | None
    kinds: frozenset[IdentityKind] | None
    allow_guest_users: bool
    #: Whether any condition on who the caller is was given; derived, not an argument.
    _about_caller: bool = field(repr=False, compare=False)

    def __init__(self, **options: Unpack[RequirementOptions]) -> None:
        unknown_options = options.keys() - RequirementOptions.__annotations__.keys()
        if unknown_options:  # what mypy catches, refused at run time too
            raise TypeError(f"unexpected Requirement options {sorted(unknown_options)}")
        get = options.get
        set_ = object.__setattr__
        for name in ("roles", "any_role", "scopes", "permissions"):
            set_(self, name, _strings(name, get(name, ())))
        for name in ("mi_resource_ids", "app_ids", "object_ids", "tenants"):
            set_(self, name, _folded(name, get(name)))
        issuers, kinds = get("issuers"), get("kinds")
        set_(self, "issuers", None if issuers is None else _strings("issuers", issuers))
        if kinds is None:
            set_(self, "kinds", None)
        else:
            accepted = _strings("kinds", kinds)
            unknown = accepted - _KINDS
            if unknown:
                raise ValueError(f"unknown identity kinds {sorted(unknown)}: use {sorted(_KINDS)}")
            set_(self, "kinds", accepted)
        allow_guest_users = get("allow_guest_users", True)
        if not isinstance(allow_guest_users, bool):
            raise TypeError(
                f"allow_guest_users must be a bool, not {type(allow_guest_users).__name__}"
            )
        set_(self, "allow_guest_users", allow_guest_users)
        set_(
            self,
            "_about_caller",
            self._allow_lists or any(get(n) is not None for n in ("issuers", "tenants", "kinds")),
        )

    def check(self, identity: Identity) -> None:
        """Raise :class:`InsufficientScope` unless ``identity`` meets every condition."""
        if self._about_caller and not self._caller_allowed(identity):
            raise InsufficientScope("caller not allowed", reason="caller_not_allowed")
        if identity.is_guest and not self.allow_guest_users:
            raise InsufficientScope("guest user not allowed", reason="guest_not_allowed")
        if not self.roles <= identity.roles:
            raise InsufficientScope("missing role", reason="missing_role", required=self.roles)
        if self.any_role and not self.any_role & identity.roles:
            # One of them would do: no scope= in the challenge, which lists what is needed.
            raise InsufficientScope("missing role", reason="missing_role")
        if not self.scopes <= identity.scopes:
            raise InsufficientScope("missing scope", reason="missing_scope", required=self.scopes)
        if self.permissions and not self.permissions <= identity.permissions:
            # Named as FastAPI's Security(scopes=...) names them: scopes for users.
            reason: Reason = "missing_scope" if identity.kind == "user" else "missing_role"
            raise InsufficientScope("missing permission", reason=reason, required=self.permissions)

    @property
    def _allow_lists(self) -> bool:
        return (
            self.mi_resource_ids is not None
            or self.app_ids is not None
            or self.object_ids is not None
        )

    def _caller_allowed(self, identity: Identity) -> bool:
        """Whether the caller's kind, issuer, tenant and allow-list entries pass."""
        if self.kinds is not None and identity.kind not in self.kinds:
            return False
        if self.issuers is not None and identity.issuer not in self.issuers:
            return False
        if self.tenants is not None and not _member(identity.tenant_id, self.tenants):
            return False
        return not self._allow_lists or (
            _member(identity.mi_resource_id, self.mi_resource_ids)
            or _member(identity.app_id, self.app_ids)
            or _member(identity.object_id, self.object_ids)
        )


def _member(value: str | None, allowed: frozenset[str] | None) -> bool:
    return allowed is not None and value is not None and ascii_fold(value) in allowed


def attach_identity(
    scope: MutableMapping[str, Any],
    identity: Identity,
    auth: tuple[TokenGuardUser, AuthCredentials] | None = None,
    *,
    validator: object,
) -> None:
    """Put a verified identity where tokenguard and Starlette look for it:
    ``scope["tokenguard.identity"]``, ``request.user`` and ``request.auth.scopes``;
    ``request.user.verified_by`` is the ``validator`` that verified it.

    ``auth`` is the user and credentials when already built (the cache keeps them).
    """
    user, credentials = starlette_auth(identity, validator) if auth is None else auth
    scope[IDENTITY_SCOPE_KEY] = identity
    scope["user"] = user
    scope["auth"] = credentials


def verified_by(scope: Mapping[str, Any], validator: object) -> Identity | None:
    """The identity in ``scope`` if ``validator`` verified it, else ``None``."""
    identity = scope.get(IDENTITY_SCOPE_KEY)
    user = scope.get("user")
    if (
        identity is not None
        and isinstance(user, TokenGuardUser)
        and user.identity is identity
        and user.verified_by is validator
    ):
        return identity
    return None


def require_identity(conn: HTTPConnection) -> Identity:
    """The verified :class:`Identity` of a request that must have one (behind
    :class:`~tokenguard.TokenGuardMiddleware`, on a path it neither excludes nor lets
    through anonymously). A missing identity is a configuration error: RuntimeError."""
    identity = get_identity(conn)
    if identity is None:
        raise RuntimeError(
            "no verified identity on this request: is TokenGuardMiddleware installed, "
            "and is the path neither excluded nor anonymous?"
        )
    return identity


def get_identity(conn: HTTPConnection) -> Identity | None:
    """The verified :class:`Identity` the middleware attached to this request, if any."""
    identity = conn.scope.get(IDENTITY_SCOPE_KEY)
    return identity if isinstance(identity, Identity) else None


def _connection_parameter(endpoint: Callable[..., Any]) -> tuple[int, str]:
    """Position and name of the endpoint's ``request`` or ``websocket`` parameter."""
    for index, parameter in enumerate(inspect.signature(endpoint).parameters.values()):
        if parameter.name in ("request", "websocket"):
            return index, parameter.name
    raise TypeError(f'No "request" or "websocket" argument on function "{endpoint}"')


def _connection(
    args: tuple[Any, ...], kwargs: dict[str, Any], index: int, name: str, expected: type[_C]
) -> _C:
    """The connection the router passed, by keyword or at its position (as Starlette)."""
    conn = kwargs.get(name, args[index] if index < len(args) else None)
    if not isinstance(conn, expected):
        raise TypeError(
            f"Parameter with name {name!r} is required to be of type {expected.__name__!r}"
            f" not {type(conn).__name__!r}"
        )
    return conn


def _permissions(permissions: str | Iterable[str] | None) -> frozenset[str]:
    """Starlette's positional argument: one permission or a collection of them."""
    if permissions is None:
        return frozenset()
    if isinstance(permissions, str):
        return frozenset((permissions,))
    return _strings("permissions", permissions)


def build_requirement(requirement: Requirement | None, options: RequirementOptions) -> Requirement:
    """``requirement``, or one built from ``options``; both at once is a TypeError."""
    if requirement is None:
        return Requirement(**options)
    if not isinstance(requirement, Requirement):
        raise TypeError(f"expected a Requirement, not {type(requirement).__name__}")
    if options:
        raise TypeError("pass a Requirement or keyword arguments, not both")
    return requirement


def requires(
    permissions: str | Iterable[str] | Requirement | None = None,
    /,
    **options: Unpack[RequirementOptions],
) -> Callable[[Callable[_P, Any]], Callable[_P, Any]]:
    """Decorate a Starlette endpoint (function or ``HTTPEndpoint`` method) with a requirement.

    Spelled as Starlette's: ``@requires("Secrets.Read")`` or ``@requires(["a", "b"])``
    needs those permissions (roles or scopes, ``request.auth.scopes``). Or pass a
    :class:`Requirement`, or :class:`Requirement`'s keyword arguments (permissions may
    go with them). Arguments are checked here: anything else is a TypeError.

    The endpoint needs a ``request`` or ``websocket`` parameter (found by name, as
    Starlette does; else TypeError). Without a verified identity an HTTP endpoint
    answers 401 with the RFC 6750 challenge; with one that falls short, 403
    ``insufficient_scope``. A websocket is closed with 1008 (policy violation) before
    it is accepted. A sync endpoint stays sync, so Starlette runs it in the threadpool.
    """
    if isinstance(permissions, Requirement):
        need = build_requirement(permissions, options)
    else:
        if permissions is not None:
            if "permissions" in options:
                raise TypeError("give permissions positionally or as a keyword, not both")
            options["permissions"] = _permissions(permissions)
        need = Requirement(**options)

    def decorate(endpoint: Callable[_P, Any]) -> Callable[_P, Any]:
        return _guard(endpoint, need)

    return decorate


def _refusal(need: Requirement, conn: HTTPConnection) -> TokenGuardError | None:
    """Why ``conn`` may not reach the endpoint (logged), or ``None``."""
    identity = get_identity(conn)
    if identity is None:
        exc: TokenGuardError = MissingToken()
    else:
        try:
            need.check(identity)
        except InsufficientScope as refused:
            exc = refused
        else:
            return None
    log_rejection(exc, identity)
    return exc


def _answer(conn: HTTPConnection, exc: TokenGuardError) -> JSONResponse:
    realm, params = conn.scope.get(CHALLENGE_SCOPE_KEY, (DEFAULT_REALM, None))
    return error_response(exc, realm, params)


def _guard(endpoint: Callable[_P, Any], need: Requirement) -> Callable[_P, Any]:
    """``endpoint`` wrapped to check ``need`` first, keeping its kind (websocket, async
    or sync: Starlette runs a sync endpoint in the threadpool)."""
    index, name = _connection_parameter(endpoint)

    if name == "websocket":

        @functools.wraps(endpoint)
        async def websocket_wrapper(*args: _P.args, **kwargs: _P.kwargs) -> None:
            websocket = _connection(args, kwargs, index, name, WebSocket)
            exc = _refusal(need, websocket)
            if exc is not None:
                await websocket.close(code=WS_POLICY_VIOLATION, reason=exc.description)
                return
            await endpoint(*args, **kwargs)

        return websocket_wrapper

    if is_async_callable(endpoint):

        @functools.wraps(endpoint)
        async def async_wrapper(*args: _P.args, **kwargs: _P.kwargs) -> Any:
            request = _connection(args, kwargs, index, name, Request)
            exc = _refusal(need, request)
            if exc is not None:
                return _answer(request, exc)
            return await endpoint(*args, **kwargs)

        return async_wrapper

    @functools.wraps(endpoint)
    def sync_wrapper(*args: _P.args, **kwargs: _P.kwargs) -> Any:
        request = _connection(args, kwargs, index, name, Request)
        exc = _refusal(need, request)
        if exc is not None:
            return _answer(request, exc)
        return endpoint(*args, **kwargs)

    return sync_wrapper
