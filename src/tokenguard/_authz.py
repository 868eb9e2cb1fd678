"""Authorization on a verified identity: roles, scopes and caller allow-lists.

A :class:`Requirement` can be applied to a whole app (middleware option) or per
route (:func:`requires`). Failures raise :class:`InsufficientScope` (403).
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Iterable, MutableMapping
from dataclasses import dataclass
from typing import Any, TypeVar

from starlette.authentication import AuthCredentials
from starlette.requests import HTTPConnection

from ._errors import InsufficientScope, MissingToken
from ._identity import Identity, IdentityKind, TokenGuardUser, starlette_auth

__all__ = [
    "CHALLENGE_SCOPE_KEY",
    "IDENTITY_SCOPE_KEY",
    "VALIDATOR_SCOPE_KEY",
    "Requirement",
    "attach_identity",
    "get_identity",
    "requires",
]

#: Where the middleware puts the :class:`Identity` in the ASGI scope.
IDENTITY_SCOPE_KEY = "tokenguard.identity"
#: Where the middleware leaves its challenge settings for per-route checks.
CHALLENGE_SCOPE_KEY = "tokenguard.challenge"
#: The :class:`~tokenguard.TokenValidator` that verified the identity in the scope: a
#: FastAPI guard reuses the identity only when it is its own validator.
VALIDATOR_SCOPE_KEY = "tokenguard.validator"

_F = TypeVar("_F", bound=Callable[..., Any])


def _folded(values: Iterable[str] | None) -> frozenset[str] | None:
    if values is None:
        return None
    if isinstance(values, str):
        values = (values,)
    return frozenset(v.lower() for v in values)


@dataclass(frozen=True, slots=True, init=False)
class Requirement:
    """What a caller must have.

    - ``roles``: every one of these app roles; ``any_role``: at least one of these.
    - ``scopes``: every one of these delegated scopes.
    - ``mi_resource_ids`` / ``app_ids`` / ``object_ids``: caller allow-lists; when any is
      given the caller must match at least one entry of one of them (compared without
      case: Azure resource ids and GUIDs are case-insensitive).
    - ``kinds``: accepted identity kinds (e.g. only ``"managed_identity"``).
    """

    roles: frozenset[str]
    any_role: frozenset[str]
    scopes: frozenset[str]
    mi_resource_ids: frozenset[str] | None
    app_ids: frozenset[str] | None
    object_ids: frozenset[str] | None
    kinds: frozenset[IdentityKind] | None

    def __init__(
        self,
        *,
        roles: Iterable[str] = (),
        any_role: Iterable[str] = (),
        scopes: Iterable[str] = (),
        mi_resource_ids: Iterable[str] | None = None,
        app_ids: Iterable[str] | None = None,
        object_ids: Iterable[str] | None = None,
        kinds: Iterable[IdentityKind] | None = None,
    ) -> None:
        def as_set(values: Iterable[str]) -> frozenset[str]:
            return frozenset((values,)) if isinstance(values, str) else frozenset(values)

        set_ = object.__setattr__
        set_(self, "roles", as_set(roles))
        set_(self, "any_role", as_set(any_role))
        set_(self, "scopes", as_set(scopes))
        set_(self, "mi_resource_ids", _folded(mi_resource_ids))
        set_(self, "app_ids", _folded(app_ids))
        set_(self, "object_ids", _folded(object_ids))
        set_(self, "kinds", None if kinds is None else frozenset(kinds))

    def check(self, identity: Identity) -> None:
        """Raise :class:`InsufficientScope` unless ``identity`` meets every condition."""
        if self.kinds is not None and identity.kind not in self.kinds:
            raise InsufficientScope("identity kind not allowed", reason="caller_not_allowed")
        if self._allow_lists and not self._caller_allowed(identity):
            raise InsufficientScope("caller not in allow-list", reason="caller_not_allowed")
        if not self.roles <= identity.roles:
            raise InsufficientScope("missing role", reason="missing_role", required=self.roles)
        if self.any_role and not self.any_role & identity.roles:
            raise InsufficientScope("missing role", reason="missing_role", required=self.any_role)
        if not self.scopes <= identity.scopes:
            raise InsufficientScope("missing scope", reason="missing_scope", required=self.scopes)

    @property
    def _allow_lists(self) -> bool:
        return (
            self.mi_resource_ids is not None
            or self.app_ids is not None
            or self.object_ids is not None
        )

    def _caller_allowed(self, identity: Identity) -> bool:
        """Whether the caller is on one of the allow-lists (at least one is given)."""
        lists = (
            (self.mi_resource_ids, identity.mi_resource_id),
            (self.app_ids, identity.app_id),
            (self.object_ids, identity.object_id),
        )
        return any(
            allowed is not None and value is not None and value.lower() in allowed
            for allowed, value in lists
        )


def attach_identity(
    scope: MutableMapping[str, Any],
    identity: Identity,
    auth: tuple[TokenGuardUser, AuthCredentials] | None = None,
    *,
    validator: object,
) -> None:
    """Put a verified identity where tokenguard and Starlette look for it:
    ``scope["tokenguard.identity"]``, ``request.user`` and ``request.auth.scopes``,
    with the ``validator`` that verified it.

    ``auth`` is the user and credentials when already built (the cache keeps them).
    """
    user, credentials = starlette_auth(identity) if auth is None else auth
    scope[IDENTITY_SCOPE_KEY] = identity
    scope[VALIDATOR_SCOPE_KEY] = validator
    scope["user"] = user
    scope["auth"] = credentials


def get_identity(conn: HTTPConnection) -> Identity | None:
    """The verified :class:`Identity` the middleware attached to this request, if any."""
    identity = conn.scope.get(IDENTITY_SCOPE_KEY)
    return identity if isinstance(identity, Identity) else None


def requires(
    requirement: Requirement | None = None,
    *,
    roles: Iterable[str] = (),
    any_role: Iterable[str] = (),
    scopes: Iterable[str] = (),
    mi_resource_ids: Iterable[str] | None = None,
    app_ids: Iterable[str] | None = None,
    object_ids: Iterable[str] | None = None,
    kinds: Iterable[IdentityKind] | None = None,
) -> Callable[[_F], _F]:
    """Decorate a Starlette endpoint ``(request) -> Response`` with a requirement.

    Without a verified identity the endpoint answers 401 with the RFC 6750 challenge;
    with one that falls short, 403 ``insufficient_scope``.
    """
    need = requirement or Requirement(
        roles=roles,
        any_role=any_role,
        scopes=scopes,
        mi_resource_ids=mi_resource_ids,
        app_ids=app_ids,
        object_ids=object_ids,
        kinds=kinds,
    )
    from ._responses import DEFAULT_REALM, error_response  # a cycle only at import time

    def decorate(endpoint: _F) -> _F:
        is_async = inspect.iscoroutinefunction(endpoint)

        @functools.wraps(endpoint)
        async def wrapper(conn: HTTPConnection, *args: Any, **kwargs: Any) -> Any:
            identity = get_identity(conn)
            try:
                if identity is None:
                    raise MissingToken
                need.check(identity)
            except (MissingToken, InsufficientScope) as exc:
                realm, params = conn.scope.get(CHALLENGE_SCOPE_KEY, (DEFAULT_REALM, None))
                return error_response(exc, realm, params)
            result = endpoint(conn, *args, **kwargs)
            return await result if is_async else result

        return wrapper  # type: ignore[return-value]

    return decorate
