"""What the IMDS and App Service endpoints share: resource and identity selection, the
token cache, rate limits.

Like real IMDS, a repeated request for the same identity and resource gets the same token
back until it nears expiry. The lab also drops a cached token once its key stops signing
or the caller's app-role assignments change, so a key rotation or a new assignment shows
in the next token handed out. The cache holds at most :data:`MAX_CACHED_TOKENS` tokens
(least recently used go first), so made-up resources cannot grow it without bound.
"""

from __future__ import annotations

import re
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Final

from starlette.datastructures import QueryParams

from .issuer import IssuedToken, LabIssuer
from .tenant import LabConfig, ManagedIdentity

__all__ = [
    "ALL_METHODS",
    "MAX_CACHED_TOKENS",
    "MAX_RESOURCE_LENGTH",
    "REUSE_MARGIN",
    "SELECTOR_KEYWORDS",
    "IdentityNotSelected",
    "RateLimiter",
    "TokenService",
    "resource_problem",
    "select_identity",
]

#: Every method: the identity endpoints route them all and answer 405 themselves.
ALL_METHODS: Final = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
#: A cached token is handed out again while it has more than this many seconds left
#: (MSAL treats a token with under 300 s left as expired; stay well clear of that).
REUSE_MARGIN: Final = 600
#: Tokens kept for reuse, across identities and resources.
MAX_CACHED_TOKENS: Final = 256
#: Longest ``resource`` accepted (Entra's identifier URIs are far shorter).
MAX_RESOURCE_LENGTH: Final = 512

_URI: Final = re.compile(r"[a-z][a-z0-9+.-]*://[^\s/?#]+[^\s]*", re.IGNORECASE)


def resource_problem(resource: str) -> str | None:
    """Why ``resource`` is not a resource Entra would issue a token for, or ``None``.

    IMDS takes a v1 *resource* (``https://vault.azure.net``), not a v2 *scope*
    (``https://vault.azure.net/.default``); Entra refuses the latter as an unknown resource.
    """
    if len(resource) > MAX_RESOURCE_LENGTH:
        return f"The resource is longer than {MAX_RESOURCE_LENGTH} characters."
    if resource.endswith("/.default") or not (_URI.fullmatch(resource) or _is_guid(resource)):
        return (
            "AADSTS500011: The resource principal named in the request was not found in "
            "the tenant. IMDS takes a resource (https://vault.azure.net), not a scope."
        )
    return None


def _is_guid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return len(value) == 36


#: Every identity selector either endpoint knows, with the ``LabConfig.user_assigned``
#: keyword it means. Each endpoint reads some of them (:func:`select_identity`); the others
#: are another endpoint's spelling, or (``resource_id``) a likely guess, refused with a hint.
SELECTOR_KEYWORDS: Final = {
    "client_id": "client_id",
    "object_id": "object_id",
    "principal_id": "object_id",
    "msi_res_id": "resource_id",
    "mi_res_id": "resource_id",
    "resource_id": "resource_id",
}


class IdentityNotSelected(Exception):
    """The request's identity selector is refused: ``status`` 400 (malformed) or 404."""

    def __init__(self, status: int, description: str) -> None:
        super().__init__(description)
        self.status = status
        self.description = description


def select_identity(
    config: LabConfig, query: QueryParams, selectors: Sequence[str]
) -> ManagedIdentity:
    """The identity a token request names: the system-assigned one when no selector is given.

    ``selectors`` are the query parameters of :data:`SELECTOR_KEYWORDS` the endpoint reads;
    another known one is 400 naming the endpoint's first selector with the same meaning. Two
    selectors, a repeated or empty one are 400 too; a selector naming no user-assigned
    identity is 404. None of them ever falls back to the system identity.
    """
    for name, keyword in SELECTOR_KEYWORDS.items():
        if name in query and name not in selectors:
            instead = next(s for s in selectors if SELECTOR_KEYWORDS[s] == keyword)
            raise IdentityNotSelected(400, f"This endpoint does not read {name}; use {instead}.")
    given = [name for name in selectors if name in query]
    if not given:
        return config.vm.identity
    if len(given) > 1 or len(query.getlist(given[0])) > 1:
        names = ", ".join(selectors)
        raise IdentityNotSelected(400, f"Specify at most one of {names}, once.")
    name = given[0]
    value = query[name]
    if not value:
        raise IdentityNotSelected(400, f"The {name} parameter is empty.")
    found = config.user_assigned(**{SELECTOR_KEYWORDS[name]: value})
    if found is None:
        raise IdentityNotSelected(404, "Identity not found.")
    return found


class RateLimiter:
    """A token bucket per key: ``rate`` requests a second, bursts of up to ``rate``."""

    def __init__(self, rate: float, *, monotonic: Callable[[], float] = time.monotonic) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.rate = rate
        self.capacity = max(1.0, rate)
        self.monotonic = monotonic
        self._buckets: dict[str, tuple[float, float]] = {}

    def allow(self, key: str) -> bool:
        """Take one request from ``key``'s bucket; ``False`` when it is empty."""
        now = self.monotonic()
        level, last = self._buckets.get(key, (self.capacity, now))
        level = min(self.capacity, level + (now - last) * self.rate)
        if level < 1.0:
            self._buckets[key] = (level, now)
            return False
        self._buckets[key] = (level - 1.0, now)
        return True


class TokenService:
    """Hands out tokens from the issuer, reusing them like IMDS does."""

    def __init__(self, issuer: LabIssuer, *, max_cached: int = MAX_CACHED_TOKENS) -> None:
        if max_cached < 1:
            raise ValueError("max_cached must be positive")
        self.issuer = issuer
        self.max_cached = max_cached
        self.minted = 0
        #: (object id, resource) -> (token, app directory generation it was minted under)
        self._cache: OrderedDict[tuple[str, str], tuple[IssuedToken, int]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._cache)

    def token(self, identity: ManagedIdentity, resource: str) -> IssuedToken:
        """A token for ``identity`` and ``resource``: the cached one if still good, else new."""
        key = (identity.object_id, resource)
        now = self.issuer.clock()
        generation = self.issuer.apps.generation
        cached = self._cache.get(key)
        if cached is not None:
            token, minted_under = cached
            if (
                minted_under == generation
                and token.expires_on - now > REUSE_MARGIN
                and token.kid == self.issuer.keys.signing(now).kid
            ):
                self._cache.move_to_end(key)
                return token
        issued = self.issuer.mint(identity, resource)
        self.minted += 1
        self._cache[key] = (issued, generation)
        self._cache.move_to_end(key)
        while len(self._cache) > self.max_cached:
            self._cache.popitem(last=False)
        return issued
