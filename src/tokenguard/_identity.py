"""Who is calling: the :class:`Identity` built from verified claims, and its Starlette user."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, fields
from types import MappingProxyType
from typing import Any, Final, Literal, get_args

from starlette.authentication import AuthCredentials, BaseUser

__all__ = [
    "CONSUMERS_TENANT",
    "ClaimPath",
    "Identity",
    "IdentityKind",
    "SharedCredentials",
    "TokenGuardUser",
    "identity_from_claims",
    "starlette_auth",
]

IdentityKind = Literal["managed_identity", "app", "user"]
#: Where a value sits in the claims: member names, outermost first
#: (``("realm_access", "roles")`` for Keycloak's realm roles).
ClaimPath = tuple[str, ...]
#: The tenant of personal Microsoft accounts: its users are nobody's guests there.
CONSUMERS_TENANT: Final = "9188040d-6c67-4c5b-b112-36a304b66dad"

_EMPTY: frozenset[str] = frozenset()
#: Keycloak names a client's service-account user ``service-account-<client id>``.
_SERVICE_ACCOUNT: Final = "service-account-"


@dataclass(frozen=True, slots=True, kw_only=True)
class Identity:
    """The calling identity, built from the claims of a verified token.

    ``kind`` is ``"managed_identity"`` for an app-only token carrying ``xms_mirid``,
    ``"app"`` for other app-only tokens and ``"user"`` otherwise. A token is app-only
    (no user behind it) by the first of these rules whose claim it has:

    1. ``idtyp`` (Entra): app-only when it is ``"app"``.
    2. ``oid`` (Entra v1 tokens without ``idtyp``): app-only when there are no scopes
       and ``oid == sub``.
    3. Otherwise (other OIDC servers): app-only when ``sub`` is the client itself, as
       RFC 9068 section 2.2 says for grants without a resource owner: ``sub`` equals
       ``client_id`` (RFC 9068), ``azp`` or Okta's ``cid``, or is that value followed by
       ``@clients`` (Auth0); or ``preferred_username`` is Keycloak's service-account
       user of the client, ``service-account-`` followed by ``azp`` (or ``client_id``)
       in lower case.

    ``is_guest`` is true for a B2B guest user of an Entra tenant (never for an app or a
    managed identity). Entra documents two signals: the optional ``acct`` claim, 1 for
    a guest and 0 for a member (optional claims reference:
    https://learn.microsoft.com/entra/identity-platform/optional-claims-reference), and
    ``idp``, which "is identical to the value of the issuer claim unless the user
    account isn't in the same tenant as the issuer - guests, for instance" (access
    token claims reference:
    https://learn.microsoft.com/entra/identity-platform/access-token-claims-reference).
    So: ``acct`` decides when present (1 or ``"1"``); otherwise a token with ``tid`` is
    a guest's when ``idp`` is present, differs from ``iss`` and does not name the
    token's own tenant (v2 tokens may carry a v1-style ``idp`` for the same tenant).
    The personal-account tenant (:data:`CONSUMERS_TENANT`) has no guests, and tokens
    without ``tid`` (other servers, whose ``idp`` means something else) are guests only
    by ``acct``.

    ``name``, ``username``, ``email`` and ``user_flow`` are read from :attr:`claims`
    when asked (they are not needed to validate, so tokens do not pay for them).
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
    is_guest: bool = False
    claims: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}), repr=False)

    @property
    def display_name(self) -> str:
        """A short human label: the managed identity's resource name, else the object id."""
        if self.mi_resource_id:
            return self.mi_resource_id.rstrip("/").rsplit("/", 1)[-1]
        return self.object_id or self.app_id or self.subject or ""

    @property
    def name(self) -> str | None:
        """The display name (``name``), when the token has one."""
        return _text(self.claims, ("name",))

    @property
    def username(self) -> str | None:
        """The sign-in name: ``preferred_username``, else ``upn``, else ``unique_name``
        (v1 tokens). Mutable and reassignable: show it, never authorize by it."""
        return _text(self.claims, ("preferred_username", "upn", "unique_name"))

    @property
    def email(self) -> str | None:
        """``email``, else the first of Azure AD B2C's ``emails``. Entra sends it for
        guests, for members only as an optional claim; it is not verified to belong to
        the user, so never authorize by it. ``upn`` is not used: it need not be a
        mailbox."""
        found = _text(self.claims, ("email",))
        if found is None:
            emails = self.claims.get("emails")
            if type(emails) is list:
                found = next((e for e in emails if type(e) is str and e), None)
        return found

    @property
    def user_flow(self) -> str | None:
        """The Azure AD B2C user flow or custom policy that issued the token: ``tfp``,
        else ``acr`` when it names one (``B2C_1_...``, ``B2C_1A_...``; elsewhere ``acr``
        is an authentication context class, not a flow)."""
        flow = _text(self.claims, ("tfp",))
        if flow is None:
            acr = _text(self.claims, ("acr",))
            if acr is not None and acr[:5].upper() == "B2C_1":
                flow = acr
        return flow

    @property
    def permissions(self) -> frozenset[str]:
        """Roles and scopes together, as Starlette's ``AuthCredentials.scopes``."""
        return self.roles | self.scopes

    def to_dict(self, *, claims: bool = False) -> dict[str, Any]:
        """The public fields as JSON-ready values (roles and scopes as sorted lists),
        ``display_name`` and the claims-backed ``name``, ``username``, ``email`` and
        ``user_flow``; the token's claims only when asked (``claims=True``)."""
        data: dict[str, Any] = {"display_name": self.display_name}
        for name in _PUBLIC_FIELDS:
            value = getattr(self, name)
            data[name] = sorted(value) if name in _SETS else value
        for name in _CLAIM_PROPERTIES:
            data[name] = getattr(self, name)
        if claims:
            data["claims"] = dict(self.claims)
        return data

    # pydantic (FastAPI's ``-> Identity`` / ``response_model=Identity``): an Identity is
    # accepted as it is and answered as :meth:`to_dict`, never with its claims. The
    # hooks import pydantic only when pydantic asks, so tokenguard does not need it.
    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: Any) -> Any:
        # By name: pydantic is FastAPI's, not tokenguard's, and a type checker run on an
        # app without it must find no import of it here.
        core_schema = importlib.import_module("pydantic_core").core_schema
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
            "kind": {"enum": list(get_args(IdentityKind)), "type": "string"},
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
            "is_guest": {"type": "boolean"},
            "name": maybe_text,
            "username": maybe_text,
            "email": maybe_text,
            "user_flow": maybe_text,
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
#: The properties read from the claims that :meth:`Identity.to_dict` answers too.
_CLAIM_PROPERTIES: Final = ("name", "username", "email", "user_flow")


def _text(claims: Mapping[str, Any], names: tuple[str, ...]) -> str | None:
    """The first of ``names`` whose claim is a non-empty string."""
    for name in names:
        value = claims.get(name)
        if type(value) is str and value:
            return value
    return None


def claim_at(claims: Mapping[str, Any], path: ClaimPath) -> Any:
    """The value at ``path`` (``None`` when a member is missing or not an object)."""
    value: Any = claims
    for name in path:
        if type(value) is not dict:
            return None
        value = value.get(name)
    return value


def _names(value: Any) -> frozenset[str]:
    """A mapped roles or scopes claim: a space-separated string or a list of strings."""
    if type(value) is str:
        return frozenset(value.split())
    return _strings(value) if type(value) is list else _EMPTY


def _without_user(get: Any, sub: str) -> bool:
    """Rule 3 of :class:`Identity`'s kinds: the token of a client acting as itself."""
    for name in ("client_id", "azp", "cid"):
        client = get(name)
        if type(client) is str and client and (sub == client or sub == client + "@clients"):
            return True
    username = get("preferred_username")
    if type(username) is str and username.startswith(_SERVICE_ACCOUNT):
        client = get("azp")
        if not (type(client) is str and client):
            client = get("client_id")
        return (
            type(client) is str and bool(client) and username == (_SERVICE_ACCOUNT + client.lower())
        )
    return False


def _strings(values: list[Any]) -> frozenset[str]:
    """The non-empty strings of a JSON array (an empty name grants nothing)."""
    try:
        found = frozenset(values)
    except TypeError:  # an unhashable member: keep the strings only
        return frozenset(v for v in values if type(v) is str and v)
    if "" not in found and all(type(v) is str for v in found):
        return found
    return frozenset(v for v in found if type(v) is str and v)


def _permissions(
    claims: dict[str, Any], scopes_path: ClaimPath | None, roles_path: ClaimPath | None
) -> tuple[frozenset[str], frozenset[str]]:
    """The token's scopes and roles, where the issuer's configuration says they are."""
    get = claims.get
    if scopes_path is None:
        # Entra puts delegated scopes in ``scp``; RFC 9068 servers in ``scope``.
        scp = get("scp")
        if scp is None:
            scp = get("scope")
        # ``scp`` is one space-separated string.
        if type(scp) is str:
            scopes = frozenset(scp.split())
        else:
            scopes = _strings(scp) if type(scp) is list else _EMPTY
    else:
        scopes = _names(claim_at(claims, scopes_path))
    if roles_path is None:
        # Entra's ``roles`` is a JSON array whose names may hold spaces.
        roles_claim = get("roles")
        if type(roles_claim) is list:
            roles = _strings(roles_claim)
        elif type(roles_claim) is str and roles_claim:
            roles = frozenset((roles_claim,))
        else:
            roles = _EMPTY
    else:
        roles = _names(claim_at(claims, roles_path))
    return scopes, roles


def _is_guest(get: Callable[[str], Any], tid: str | None, iss: str) -> bool:
    """Whether a user token comes from a B2B guest: ``acct`` says so, else an ``idp``
    that is neither the issuer nor the tenant (nor the consumers tenant)."""
    acct = get("acct")
    if acct is not None:
        return acct in (1, "1")
    if tid is None:
        return False
    idp = get("idp")
    return (
        type(idp) is str
        and idp != iss
        and tid.lower() not in idp.lower()
        and tid != CONSUMERS_TENANT
    )


def identity_from_claims(
    claims: dict[str, Any],
    *,
    audience: str,
    mapping: Mapping[str, Any] | None = None,
    roles_path: ClaimPath | None = None,
    scopes_path: ClaimPath | None = None,
) -> Identity:
    """Build an :class:`Identity` from already verified claims (this runs per new token).

    ``mapping`` is what ``Identity.claims`` holds (default: a read-only view of ``claims``).
    Text fields take non-empty strings only; anything else counts as absent.
    ``roles_path`` / ``scopes_path`` (an :class:`~tokenguard.Issuer`'s ``roles_claim`` /
    ``scopes_claim``) say where roles and scopes are, each a space-separated string or a
    list of strings; ``None`` reads Entra's ``roles`` and ``scp`` (else ``scope``).
    """
    get = claims.get
    oid = _text(claims, ("oid",))
    sub = _text(claims, ("sub",))
    scopes, roles = _permissions(claims, scopes_path, roles_path)
    idtyp = get("idtyp")
    if idtyp is not None:
        app_only = idtyp == "app"
    elif oid is not None:
        app_only = not scopes and oid == sub
    else:
        app_only = sub is not None and _without_user(get, sub)
    mirid = _text(claims, ("xms_mirid",))
    kind: IdentityKind = ("managed_identity" if mirid else "app") if app_only else "user"
    tid = _text(claims, ("tid",))
    iss = claims["iss"]
    is_guest = False if app_only else _is_guest(get, tid, iss)
    app_id = _text(claims, ("appid", "azp"))
    nbf = get("nbf")
    # See _IdentityBuilder: plain slot stores, then the object becomes an Identity.
    identity = _new_builder(_IdentityBuilder)
    identity.kind = kind
    identity.object_id = oid
    identity.tenant_id = tid
    identity.app_id = app_id
    identity.subject = sub
    identity.issuer = iss
    identity.audience = audience
    identity.mi_resource_id = mirid
    identity.roles = roles
    identity.scopes = scopes
    identity.expires_at = int(claims["exp"])
    identity.not_before = int(nbf) if nbf is not None else None
    identity.is_guest = is_guest
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
