"""Who is calling: the :class:`Identity` built from verified claims, and its Starlette user."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from types import MappingProxyType
from typing import Any, Literal

from starlette.authentication import AuthCredentials, BaseUser

__all__ = [
    "Identity",
    "IdentityKind",
    "SharedCredentials",
    "TokenGuardUser",
    "identity_from_claims",
    "starlette_auth",
]

IdentityKind = Literal["managed_identity", "app", "user"]

_EMPTY: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True, kw_only=True)
class Identity:
    """The calling identity, built from the claims of a verified token.

    ``kind`` is ``"managed_identity"`` for an app-only token carrying ``xms_mirid``,
    ``"app"`` for other app-only tokens (``idtyp == "app"``, or no ``scp`` and
    ``oid == sub`` when ``idtyp`` is absent), and ``"user"`` otherwise.
    """

    kind: IdentityKind
    object_id: str | None
    tenant_id: str | None
    app_id: str | None
    subject: str | None
    issuer: str
    audience: str
    mi_resource_id: str | None
    roles: frozenset[str] = _EMPTY
    scopes: frozenset[str] = _EMPTY
    expires_at: int = 0
    not_before: int | None = None
    claims: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}), repr=False)

    @property
    def display_name(self) -> str:
        """A short human label: the managed identity's resource name, else the object id."""
        if self.mi_resource_id:
            return self.mi_resource_id.rstrip("/").rsplit("/", 1)[-1]
        return self.object_id or self.app_id or self.subject or ""

    @property
    def permissions(self) -> frozenset[str]:
        """Roles and scopes together, as Starlette's ``AuthCredentials.scopes``."""
        return self.roles | self.scopes


def _text(value: object) -> str | None:
    return value if type(value) is str and value else None


def _strings(values: list[Any]) -> frozenset[str]:
    try:
        found = frozenset(values)
    except TypeError:  # an unhashable member: keep the strings only
        return frozenset(v for v in values if type(v) is str)
    if all(type(v) is str for v in found):
        return found
    return frozenset(v for v in found if type(v) is str)


def identity_from_claims(
    claims: dict[str, Any], *, audience: str, mapping: Mapping[str, Any] | None = None
) -> Identity:
    """Build an :class:`Identity` from already verified claims (this runs per new token).

    ``mapping`` is what ``Identity.claims`` holds (default: a read-only view of ``claims``).
    """
    get = claims.get
    oid = _text(get("oid"))
    sub = _text(get("sub"))
    # Entra puts delegated scopes in ``scp``; RFC 9068 servers in ``scope``.
    scp = get("scp")
    if scp is None:
        scp = get("scope")
    # ``scp`` is one space-separated string; ``roles`` a JSON array whose names may hold spaces.
    if type(scp) is str:
        scopes = frozenset(scp.split())
    else:
        scopes = _strings(scp) if type(scp) is list else _EMPTY
    roles_claim = get("roles")
    if type(roles_claim) is list:
        roles = _strings(roles_claim)
    else:
        roles = frozenset((roles_claim,)) if type(roles_claim) is str else _EMPTY
    idtyp = get("idtyp")
    app_only = (
        idtyp == "app" if idtyp is not None else (not scopes and oid is not None and oid == sub)
    )
    mirid = _text(get("xms_mirid"))
    kind: IdentityKind = ("managed_identity" if mirid else "app") if app_only else "user"
    nbf = get("nbf")
    identity = _new_identity(Identity)
    _set_kind(identity, kind)
    _set_object_id(identity, oid)
    _set_tenant_id(identity, _text(get("tid")))
    _set_app_id(identity, _text(get("appid")) or _text(get("azp")))
    _set_subject(identity, sub)
    _set_issuer(identity, claims["iss"])
    _set_audience(identity, audience)
    _set_mi_resource_id(identity, mirid)
    _set_roles(identity, roles)
    _set_scopes(identity, scopes)
    _set_expires_at(identity, int(claims["exp"]))
    _set_not_before(identity, int(nbf) if nbf is not None else None)
    _set_claims(identity, MappingProxyType(claims) if mapping is None else mapping)
    return identity


# This runs once per new token, so it skips the frozen dataclass's __init__ (one
# object.__setattr__ per field) and fills the slots through their descriptors:
# the same object, built in a quarter of the time.
_new_identity = object.__new__
_SETTERS = {f.name: vars(Identity)[f.name].__set__ for f in fields(Identity)}
_set_kind = _SETTERS["kind"]
_set_object_id = _SETTERS["object_id"]
_set_tenant_id = _SETTERS["tenant_id"]
_set_app_id = _SETTERS["app_id"]
_set_subject = _SETTERS["subject"]
_set_issuer = _SETTERS["issuer"]
_set_audience = _SETTERS["audience"]
_set_mi_resource_id = _SETTERS["mi_resource_id"]
_set_roles = _SETTERS["roles"]
_set_scopes = _SETTERS["scopes"]
_set_expires_at = _SETTERS["expires_at"]
_set_not_before = _SETTERS["not_before"]
_set_claims = _SETTERS["claims"]
if len(_SETTERS) != 13:  # pragma: no cover - a field was added without a setter above
    raise AssertionError("identity_from_claims must set every Identity field")


class TokenGuardUser(BaseUser):
    """Starlette ``request.user`` for a verified caller; ``.identity`` is the :class:`Identity`."""

    __slots__ = ("_identity",)

    def __init__(self, identity: Identity) -> None:
        self._identity = identity

    @property
    def identity(self) -> Identity:  # type: ignore[override]
        """The verified :class:`Identity` (Starlette's ``BaseUser.identity`` is a plain id)."""
        return self._identity

    @property
    def is_authenticated(self) -> bool:
        return True

    @property
    def display_name(self) -> str:
        return self.identity.display_name

    @property
    def identity_id(self) -> str:
        return self.identity.object_id or self.identity.subject or ""

    def __repr__(self) -> str:
        return f"TokenGuardUser({self.identity.kind}, {self.identity_id!r})"


class SharedCredentials(AuthCredentials):
    """``request.auth`` of a verified caller, shared by every request with the same token.

    Read-only: ``scopes`` hands out a new list on each access and cannot be assigned,
    so no request can change what the next request with this token is granted.
    """

    __slots__ = ("_scopes",)

    def __init__(self, scopes: Sequence[str]) -> None:  # no super(): there is no list to set
        self._scopes = tuple(scopes)

    # Read-only on purpose: the object is shared between requests.
    @property
    def scopes(self) -> list[str]:  # type: ignore[override]
        """The roles and scopes of the token, as a fresh list."""
        return list(self._scopes)


def starlette_auth(identity: Identity) -> tuple[TokenGuardUser, SharedCredentials]:
    """``request.user`` and ``request.auth`` (roles and scopes) for an identity."""
    return TokenGuardUser(identity), SharedCredentials(tuple(identity.permissions))
