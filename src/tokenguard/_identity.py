"""Who is calling: the :class:`Identity` built from verified claims, and its Starlette user."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields
from types import MappingProxyType
from typing import Any, Final, Literal

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

    def to_dict(self, *, claims: bool = False) -> dict[str, Any]:
        """The public fields as JSON-ready values (roles and scopes as sorted lists) and
        ``display_name``; the token's claims only when asked (``claims=True``)."""
        data: dict[str, Any] = {"display_name": self.display_name}
        for name in _PUBLIC_FIELDS:
            value = getattr(self, name)
            data[name] = sorted(value) if name in _SETS else value
        if claims:
            data["claims"] = dict(self.claims)
        return data

    # pydantic (FastAPI's ``-> Identity`` / ``response_model=Identity``): an Identity is
    # accepted as it is and answered as :meth:`to_dict`, never with its claims. The
    # hooks import pydantic only when pydantic asks, so tokenguard does not need it.
    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: Any) -> Any:
        from pydantic_core import core_schema

        return core_schema.is_instance_schema(
            cls,
            ref=f"{cls.__module__}.{cls.__qualname__}",
            serialization=core_schema.plain_serializer_function_ser_schema(
                lambda identity: identity.to_dict(), when_used="always"
            ),
        )

    @classmethod
    def __get_pydantic_json_schema__(cls, schema: Any, handler: Any) -> dict[str, Any]:
        text = {"type": "string"}
        maybe_text = {"anyOf": [text, {"type": "null"}]}
        names = {"type": "array", "items": text, "uniqueItems": True}
        properties: dict[str, Any] = {
            "display_name": text,
            "kind": {"enum": ["managed_identity", "app", "user"], "type": "string"},
            "object_id": maybe_text,
            "tenant_id": maybe_text,
            "app_id": maybe_text,
            "subject": maybe_text,
            "issuer": text,
            "audience": text,
            "mi_resource_id": maybe_text,
            "roles": names,
            "scopes": names,
            "expires_at": {"type": "integer"},
            "not_before": {"anyOf": [{"type": "integer"}, {"type": "null"}]},
        }
        return {
            "title": "Identity",
            "type": "object",
            "properties": properties,
            "required": list(properties),
        }


#: The fields :meth:`Identity.to_dict` answers (all but the claims), and the set-valued ones.
_PUBLIC_FIELDS: Final = tuple(f.name for f in fields(Identity) if f.name != "claims")
_SETS: Final = ("roles", "scopes")


def _strings(values: list[Any]) -> frozenset[str]:
    """The non-empty strings of a JSON array (an empty name grants nothing)."""
    try:
        found = frozenset(values)
    except TypeError:  # an unhashable member: keep the strings only
        return frozenset(v for v in values if type(v) is str and v)
    if "" not in found and all(type(v) is str for v in found):
        return found
    return frozenset(v for v in found if type(v) is str and v)


def identity_from_claims(
    claims: dict[str, Any], *, audience: str, mapping: Mapping[str, Any] | None = None
) -> Identity:
    """Build an :class:`Identity` from already verified claims (this runs per new token).

    ``mapping`` is what ``Identity.claims`` holds (default: a read-only view of ``claims``).
    Text fields take non-empty strings only; anything else counts as absent.
    """
    get = claims.get
    # Written out rather than a helper per field: this runs once per new token.
    oid = get("oid")
    oid = oid if type(oid) is str and oid else None
    sub = get("sub")
    sub = sub if type(sub) is str and sub else None
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
        roles = frozenset((roles_claim,)) if type(roles_claim) is str and roles_claim else _EMPTY
    idtyp = get("idtyp")
    app_only = (
        idtyp == "app" if idtyp is not None else (not scopes and oid is not None and oid == sub)
    )
    mirid = get("xms_mirid")
    mirid = mirid if type(mirid) is str and mirid else None
    kind: IdentityKind = ("managed_identity" if mirid else "app") if app_only else "user"
    tid = get("tid")
    app_id = get("appid")
    if not (type(app_id) is str and app_id):
        app_id = get("azp")
        app_id = app_id if type(app_id) is str and app_id else None
    nbf = get("nbf")
    # See _IdentityBuilder: plain slot stores, then the object becomes an Identity.
    identity = _new_builder(_IdentityBuilder)
    identity.kind = kind
    identity.object_id = oid
    identity.tenant_id = tid if type(tid) is str and tid else None
    identity.app_id = app_id
    identity.subject = sub
    identity.issuer = claims["iss"]
    identity.audience = audience
    identity.mi_resource_id = mirid
    identity.roles = roles
    identity.scopes = scopes
    identity.expires_at = int(claims["exp"])
    identity.not_before = int(nbf) if nbf is not None else None
    identity.claims = MappingProxyType(claims) if mapping is None else mapping
    identity.__class__ = Identity
    built: Identity = identity  # typed: the builder is Any to mypy
    return built


# The slots of Identity, without the freeze. identity_from_claims runs once per new
# token: the frozen dataclass's __init__ stores each field through
# object.__setattr__, where plain slot stores and one __class__ assignment (Python
# allows it between classes of identical layout) cost a fraction of that; the gain
# on the unique-token path is measured in bench/README.md. The result is an
# ordinary, frozen Identity.
_IdentityBuilder: type[Any] = type(
    "_IdentityBuilder",
    (),
    {"__slots__": Identity.__slots__, "__module__": __name__},
)
_new_builder = object.__new__
if tuple(f.name for f in fields(Identity)) != _IdentityBuilder.__slots__:  # pragma: no cover
    raise AssertionError("_IdentityBuilder must have exactly the slots of Identity")


class TokenGuardUser(BaseUser):
    """Starlette ``request.user`` for a verified caller; ``.identity`` is the :class:`Identity`.

    ``verified_by`` is the :class:`~tokenguard.TokenValidator` that verified it (a
    FastAPI guard reuses the identity only when it is its own validator).
    """

    __slots__ = ("_identity", "_verified_by")

    def __init__(self, identity: Identity, verified_by: object = None) -> None:
        self._identity = identity
        self._verified_by = verified_by

    @property
    def verified_by(self) -> object:
        """The validator that verified the identity (``None`` when not known)."""
        return self._verified_by

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

    def __init__(self, scopes: Iterable[str]) -> None:  # no super(): there is no list to set
        self._scopes = tuple(scopes)

    # Read-only on purpose: the object is shared between requests.
    @property
    def scopes(self) -> list[str]:  # type: ignore[override]
        """The roles and scopes of the token, as a fresh list."""
        return list(self._scopes)


def starlette_auth(
    identity: Identity, verified_by: object = None
) -> tuple[TokenGuardUser, SharedCredentials]:
    """``request.user`` and ``request.auth`` (roles and scopes) for an identity."""
    return TokenGuardUser(identity, verified_by), SharedCredentials(identity.permissions)
