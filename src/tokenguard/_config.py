"""Configuration: one frozen :class:`Issuer` per trusted token issuer.

Every limit has a named default; nonsense is rejected when the object is built,
not when the first token arrives.
"""

from __future__ import annotations

import functools
import inspect
import ipaddress
import math
import string
from collections.abc import Awaitable, Callable, Collection, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Final
from urllib.parse import urlsplit

from ._algorithms import ASYMMETRIC_ALGORITHMS, SYMMETRIC_ALGORITHMS

__all__ = [
    "ASYMMETRIC_ALGORITHMS",
    "DEFAULT_ALGORITHMS",
    "DEFAULT_FETCH_TIMEOUT",
    "DEFAULT_KEYS_TTL",
    "DEFAULT_LEEWAY",
    "DEFAULT_MAX_JWKS_BYTES",
    "DEFAULT_MAX_KEYS",
    "DEFAULT_MAX_STALE",
    "DEFAULT_MAX_TTL",
    "DEFAULT_MIN_TTL",
    "DEFAULT_REFRESH_COOLDOWN",
    "DEFAULT_TENANT_CACHE_SIZE",
    "DEFAULT_TENANT_CACHE_TTL",
    "DEFAULT_TENANT_CHECK_TIMEOUT",
    "TENANT_PLACEHOLDER",
    "Issuer",
    "TenantCheck",
    "ascii_fold",
    "claim_path",
    "is_loopback_host",
    "refuse_lone_string",
]

TENANT_PLACEHOLDER: Final = "{tenantid}"
DEFAULT_ALGORITHMS: Final = ("RS256",)
DEFAULT_LEEWAY: Final = 60
DEFAULT_MIN_TTL: Final = 300.0
DEFAULT_MAX_TTL: Final = 86_400.0
DEFAULT_KEYS_TTL: Final = 3_600.0
DEFAULT_REFRESH_COOLDOWN: Final = 30.0
DEFAULT_MAX_STALE: Final = 86_400.0
DEFAULT_FETCH_TIMEOUT: Final = 5.0
DEFAULT_MAX_JWKS_BYTES: Final = 512 * 1024
DEFAULT_MAX_KEYS: Final = 100
DEFAULT_ERROR_BACKOFF: Final = 5.0
#: How long a ``tenants`` callable's answer (allow or deny) is kept, per tenant.
DEFAULT_TENANT_CACHE_TTL: Final = 300.0
#: How many tenants' answers are kept (least recently used ones go first).
DEFAULT_TENANT_CACHE_SIZE: Final = 10_000
#: Deadline of one ``tenants`` call; past it the request gets 503.
DEFAULT_TENANT_CHECK_TIMEOUT: Final = 5.0

TenantCheck = Callable[[str], Awaitable[bool]]
"""An async ``tid -> bool`` deciding whether a tenant is accepted (``Issuer.tenants``)."""
#: The settings that are collections of strings (a lone string is refused, not split).
_STRING_COLLECTIONS: Final = (
    "audiences",
    "algorithms",
    "tenants",
    "required_claims",
    "token_types",
    "discovery_urls",
)
#: The settings that are durations in seconds.
_SECONDS: Final = (
    "leeway",
    "min_cache_ttl",
    "max_cache_ttl",
    "default_cache_ttl",
    "refresh_cooldown",
    "max_stale",
    "fetch_timeout",
    "error_backoff",
    "tenant_cache_ttl",
    "tenant_check_timeout",
)


def is_loopback_host(host: str) -> bool:
    """True for ``localhost`` and loopback addresses (127.0.0.0/8, ::1)."""
    host = host.strip("[]").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_url(url: str, what: str) -> str:
    """Accept https URLs, and http only for loopback hosts."""
    parts = urlsplit(url)
    if not parts.hostname:
        raise ValueError(f"{what} must be an absolute URL")
    if parts.scheme == "https":
        return url
    if parts.scheme == "http" and is_loopback_host(parts.hostname):
        return url
    raise ValueError(f"{what} must use https (http is allowed only for loopback hosts)")


@dataclass(frozen=True, kw_only=True)
class Issuer:
    """A trusted issuer: whose tokens are accepted, for which audiences, with which keys.

    ``issuer`` is compared to the token's ``iss`` as an exact string. It may contain
    ``{tenantid}`` (Entra multi-tenant metadata does): the token's ``tid`` claim fills
    it, and ``tenants`` (if given) limits which tenants are accepted: a collection of
    tenant ids, or an async callable ``tid -> bool`` (a database of onboarded customers)
    asked once per tenant per ``tenant_cache_ttl``, only for tokens that verified
    otherwise; its errors and timeouts are :class:`TenantUnavailable` (503), not denials.

    ``discovery_urls`` serves one issuer that publishes several key sources, as Azure AD
    B2C does: every user flow (policy) of a tenant has its own discovery document and
    keys, but all of them issue the same ``iss``. The keys of all are accepted.

    ``audiences``, ``algorithms``, ``tenants``, ``required_claims`` and ``token_types``
    are collections of strings: a lone string is a ``TypeError`` (``tenants="<id>"``
    would otherwise be a set of characters).
    """

    issuer: str
    audiences: Sequence[str]
    discovery_url: str | None = None
    #: Several discovery documents of this one issuer (B2C: one per policy); each must
    #: advertise ``issuer``; the keys of all of them verify its tokens.
    discovery_urls: Sequence[str] = ()
    jwks_uri: str | None = None
    algorithms: Sequence[str] = DEFAULT_ALGORITHMS
    tenants: Collection[str] | TenantCheck | None = None
    #: How long a ``tenants`` callable's decision (allow or deny) is kept per tenant.
    tenant_cache_ttl: float = DEFAULT_TENANT_CACHE_TTL
    #: How many tenants' decisions are kept.
    tenant_cache_size: int = DEFAULT_TENANT_CACHE_SIZE
    #: Deadline of one ``tenants`` call (finite).
    tenant_check_timeout: float = DEFAULT_TENANT_CHECK_TIMEOUT
    #: Accepted header ``typ`` values (case-insensitive, ``application/`` optional).
    #: ``None`` skips the check; use ``("at+jwt",)`` for RFC 9068 servers.
    token_types: Sequence[str] | None = None
    required_claims: Sequence[str] = ()
    #: Refuse tokens that grant nothing (Microsoft.Identity.Web's IDW10201): neither a
    #: role nor a scope in ``roles``, ``scp`` or RFC 9068 ``scope``, read as
    #: :class:`Identity` reads them (empty values and non-strings grant nothing). Such
    #: tokens are ID tokens without ``nonce`` and apps granted no permission on this API.
    #: Set ``False`` for APIs that authorize by object id (``oid``) instead, as Azure
    #: RBAC services such as Key Vault and Storage do: managed-identity tokens for them
    #: carry neither claim.
    require_roles_or_scopes: bool = True
    # -- where roles and scopes are (other OIDC servers) ---------------------------
    #: The claim holding the caller's roles: a dotted path into the claims
    #: (``"realm_access.roles"``, ``"resource_access.my-api.roles"``, ``"permissions"``,
    #: ``"groups"``), or a sequence of member names when a name holds a dot (Auth0's
    #: namespaced ``("https://example.com/roles",)``). Its value is a space-separated
    #: string or a list of strings. ``None`` reads Entra's ``roles`` (a list, or one name).
    roles_claim: str | Sequence[str] | None = None
    #: The claim holding the delegated scopes, as ``roles_claim``. ``None`` reads Entra's
    #: ``scp``, else RFC 9068's ``scope``.
    scopes_claim: str | Sequence[str] | None = None
    #: ``roles_claim`` and ``scopes_claim`` as paths of member names; derived.
    _roles_path: tuple[str, ...] | None = field(init=False, repr=False, compare=False)
    _scopes_path: tuple[str, ...] | None = field(init=False, repr=False, compare=False)
    #: When the key that verified a token names an ``issuer`` (Entra v2 key sets give
    #: every key one: ``https://login.microsoftonline.com/{tenantid}/v2.0``, or one
    #: tenant's issuer), the token's ``iss`` must equal it, ``{tenantid}`` replaced by the
    #: token's ``tid`` (Microsoft.IdentityModel's IDX40005). This refuses, for example, a
    #: work-tenant token signed by a personal-account (consumers tenant) key. Keys without
    #: ``issuer`` (v1 key sets, other issuers) are not affected. A v1 issuer
    #: (``https://sts.windows.net/{tenantid}/``) takes its keys from the v1 set
    #: (``.../discovery/keys``): pointed at a v2 set, its tokens fail this check.
    validate_key_issuer: bool = True
    #: Skip, when the key set loads, keys whose ``cloud_instance_name`` differs from the
    #: discovery document's (Microsoft.IdentityModel's IDX40012): Entra's global key sets
    #: also list ``microsoftonline.us`` keys. Needs ``discovery_url``. Keys without the
    #: member, or a discovery document without it, are not checked (as Microsoft does);
    #: the latter is logged at each discovery fetch.
    validate_cloud_instance: bool = False
    leeway: float = DEFAULT_LEEWAY
    min_cache_ttl: float = DEFAULT_MIN_TTL
    max_cache_ttl: float = DEFAULT_MAX_TTL
    default_cache_ttl: float = DEFAULT_KEYS_TTL
    refresh_cooldown: float = DEFAULT_REFRESH_COOLDOWN
    max_stale: float = DEFAULT_MAX_STALE
    fetch_timeout: float = DEFAULT_FETCH_TIMEOUT
    max_jwks_bytes: int = DEFAULT_MAX_JWKS_BYTES
    max_keys: int = DEFAULT_MAX_KEYS
    error_backoff: float = DEFAULT_ERROR_BACKOFF
    #: Lower-cased ``tenants`` for comparisons; derived, not an argument.
    _tenants_folded: frozenset[str] | None = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        for name in _STRING_COLLECTIONS:
            refuse_lone_string(name, getattr(self, name))
        set_(self, "discovery_urls", tuple(self.discovery_urls))
        set_(self, "audiences", tuple(self.audiences))
        set_(self, "algorithms", tuple(self.algorithms))
        if self.token_types is not None:
            set_(self, "token_types", tuple(_fold_typ(t) for t in self.token_types))
        static = self.tenants is not None and not callable(self.tenants)
        if static:
            set_(self, "tenants", frozenset(self.tenants))  # type: ignore[arg-type]
        set_(self, "required_claims", tuple(self.required_claims))
        set_(
            self,
            "_tenants_folded",
            frozenset(ascii_fold(t) for t in self.tenants) if static else None,  # type: ignore[union-attr]
        )
        self._validate()
        for name in ("roles_claim", "scopes_claim"):
            value = getattr(self, name)
            path = None if value is None else claim_path(name, value)
            if path is not None and not isinstance(value, str):
                set_(self, name, path)  # a tuple, so the Issuer stays hashable
            set_(self, f"_{name.removesuffix('_claim')}_path", path)

    def _validate(self) -> None:
        if not self.issuer:
            raise ValueError("issuer must not be empty")
        if self.issuer.count(TENANT_PLACEHOLDER) > 1:
            raise ValueError("issuer may contain {tenantid} at most once")
        if self.tenants is not None and not self.is_template:
            raise ValueError("tenants is only meaningful with a {tenantid} issuer template")
        if callable(self.tenants) and not is_async_callable(self.tenants):
            raise TypeError("tenants must be a collection of tenant ids or an async function")
        if self.tenant_cache_size < 1:
            raise ValueError("tenant_cache_size must be at least 1")
        if not self.audiences or not all(isinstance(a, str) and a for a in self.audiences):
            raise ValueError("audiences must be a non-empty list of non-empty strings")
        sources = (
            self.discovery_url is not None,
            bool(self.discovery_urls),
            self.jwks_uri is not None,
        )
        if sum(sources) != 1:
            raise ValueError("give exactly one of discovery_url, discovery_urls or jwks_uri")
        if len(set(self.discovery_urls)) != len(self.discovery_urls):
            raise ValueError("discovery_urls names a URL twice")
        for url in self.discovery_urls:
            if not isinstance(url, str):
                raise TypeError("discovery_urls must be a collection of URL strings")
            check_url(url, "discovery_urls")
        if self.validate_cloud_instance and self.discovery_url is None and not self.discovery_urls:
            raise ValueError(
                "validate_cloud_instance needs discovery_url: the discovery document names "
                "the cloud instance that keys must belong to"
            )
        if self.discovery_url is not None:
            check_url(self.discovery_url, "discovery_url")
        if self.jwks_uri is not None:
            check_url(self.jwks_uri, "jwks_uri")
        _check_algorithms(self.algorithms)
        for name in _SECONDS:
            if math.isnan(getattr(self, name)):
                raise ValueError(f"{name} must be a number of seconds, not NaN")
        # Both bound something: an infinite leeway would accept every expired token, an
        # infinite timeout would let a stalled issuer hang key fetches for ever.
        for name in ("leeway", "fetch_timeout", "tenant_check_timeout"):
            if math.isinf(getattr(self, name)):
                raise ValueError(f"{name} must be finite")
        if self.leeway < 0:
            raise ValueError("leeway must not be negative")
        for name in (
            "min_cache_ttl",
            "max_cache_ttl",
            "default_cache_ttl",
            "fetch_timeout",
            "tenant_cache_ttl",
            "tenant_check_timeout",
        ):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive")
        for name in ("refresh_cooldown", "max_stale", "error_backoff"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must not be negative")
        if self.min_cache_ttl > self.max_cache_ttl:
            raise ValueError("min_cache_ttl must not exceed max_cache_ttl")
        if self.max_jwks_bytes < 1024 or self.max_keys < 1:
            raise ValueError("max_jwks_bytes must be at least 1024 and max_keys at least 1")

    @property
    def is_template(self) -> bool:
        """True when the issuer contains ``{tenantid}``."""
        return TENANT_PLACEHOLDER in self.issuer

    @property
    def key_source(self) -> str:
        """The URL keys come from (discovery document or JWKS; the first of several)."""
        return self.discovery_url or next(iter(self.discovery_urls), None) or self.jwks_uri or ""

    @property
    def tenant_check(self) -> TenantCheck | None:
        """The ``tenants`` callable, or ``None`` when ``tenants`` is a collection or unset."""
        return self.tenants if callable(self.tenants) else None

    def tenant_allowed(self, tenant: str) -> bool:
        """Whether a tenant id passes the ``tenants`` allow-list (a callable is asked
        later, by the validator: this answers ``True`` for it)."""
        folded = self._tenants_folded
        return folded is None or ascii_fold(tenant) in folded


def claim_path(name: str, value: object) -> tuple[str, ...]:
    """A claim path: a dotted string split at its dots, or a sequence of member names."""
    if isinstance(value, str):
        path = tuple(value.split("."))
    elif isinstance(value, bytes) or not isinstance(value, Sequence):
        raise TypeError(f"{name} must be a dotted str or a sequence of member names")
    else:
        path = tuple(value)
    if not path or not all(isinstance(part, str) and part for part in path):
        raise ValueError(f"{name} must name non-empty claim members, e.g. 'realm_access.roles'")
    return path


def is_async_callable(value: object) -> bool:
    """An ``async def`` function, a partial of one, or an object whose ``__call__`` is one:
    Starlette's test (``starlette._utils.is_async_callable``), which its router uses."""
    while isinstance(value, functools.partial):
        value = value.func
    return inspect.iscoroutinefunction(value) or (
        callable(value) and inspect.iscoroutinefunction(value.__call__)
    )


def refuse_lone_string(name: str, value: object) -> None:
    """A lone ``str`` (or ``bytes``) where a collection of strings is expected is a
    TypeError: iterated, ``tenants="<id>"`` would be a set of its characters."""
    if isinstance(value, str | bytes):
        kind = "a str" if isinstance(value, str) else "bytes"
        raise TypeError(f"{name} must be a collection of strings, not {kind}: {name}={[value]!r}")


_ASCII_LOWER: Final = str.maketrans(string.ascii_uppercase, string.ascii_lowercase)


def ascii_fold(value: str) -> str:
    """Lower-case ``A``-``Z`` only. Azure resource ids, GUIDs and tenant ids are ASCII;
    ``str.lower()`` would also fold look-alikes such as the Kelvin sign (U+212A) to ``k``."""
    return value.lower() if value.isascii() else value.translate(_ASCII_LOWER)


def _fold_typ(value: str) -> str:
    value = value.lower()
    return value[len("application/") :] if value.startswith("application/") else value


def _check_algorithms(algorithms: Iterable[str]) -> None:
    algs = list(algorithms)
    if not algs:
        raise ValueError("algorithms must not be empty")
    for alg in algs:
        if alg.lower() == "none":
            raise ValueError("the 'none' algorithm is never allowed")
        if alg in SYMMETRIC_ALGORITHMS:
            raise ValueError(
                f"{alg} is symmetric; tokenguard verifies issuer tokens with public keys only"
            )
        if alg not in ASYMMETRIC_ALGORITHMS:
            raise ValueError(f"unsupported algorithm {alg!r}")
