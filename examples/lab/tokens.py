"""What the IMDS and App Service endpoints share: resource checks, the token cache, rate limits.

Like real IMDS, a repeated request for the same identity and resource gets the same token
back until it nears expiry. The lab also drops a cached token once its key stops signing,
so a key rotation shows in the next token handed out.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Callable
from typing import Final

from .config import ManagedIdentity
from .issuer import IssuedToken, LabIssuer

__all__ = ["ALL_METHODS", "REUSE_MARGIN", "RateLimiter", "TokenService", "resource_problem"]

#: A cached token is handed out again while it has more than this many seconds left
#: (MSAL treats a token with under 300 s left as expired; stay well clear of that).
#: Every method: the identity endpoints route them all and answer 405 themselves.
ALL_METHODS: Final = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
REUSE_MARGIN: Final = 600

_URI: Final = re.compile(r"[a-z][a-z0-9+.-]*://[^\s/?#]+[^\s]*", re.IGNORECASE)


def resource_problem(resource: str) -> str | None:
    """Why ``resource`` is not a resource Entra would issue a token for, or ``None``.

    IMDS takes a v1 *resource* (``https://vault.azure.net``), not a v2 *scope*
    (``https://vault.azure.net/.default``); Entra refuses the latter as an unknown resource.
    """
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

    def __init__(self, issuer: LabIssuer) -> None:
        self.issuer = issuer
        self.minted = 0
        self._cache: dict[tuple[str, str], IssuedToken] = {}

    def token(self, identity: ManagedIdentity, resource: str) -> IssuedToken:
        """A token for ``identity`` and ``resource``: the cached one if still good, else new."""
        key = (identity.object_id, resource)
        now = self.issuer.clock()
        cached = self._cache.get(key)
        if (
            cached is not None
            and cached.expires_on - now > REUSE_MARGIN
            and cached.kid == self.issuer.keys.signing(now).kid
        ):
            return cached
        issued = self.issuer.mint(identity, resource)
        self.minted += 1
        self._cache[key] = issued
        return issued
