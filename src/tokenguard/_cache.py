"""The verified-token cache: a bounded LRU of verified tokens and their :class:`Identity`.

Managed-identity clients reuse one token for hours, so most requests hit here and
skip the signature check. A hit still re-checks ``exp``/``nbf`` against the clock,
and an entry dies with the key that verified it.

Lookups are exact: an entry is found by the token's last 32 bytes (the tail of its
signature, so hashing the index costs ~32 bytes of SipHash, not 1.5 KB) and then the
whole stored token is compared to the presented one. A different token never hits,
whatever it shares with a cached one; only tokens that verified are ever stored.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Final

from ._identity import Identity, TokenGuardUser, starlette_auth
from ._keys import VerificationKey

__all__ = ["DEFAULT_CACHE_SIZE", "CachedToken", "TokenCache"]

DEFAULT_CACHE_SIZE: Final = 10_000
_INDEX_BYTES: Final = 32


class CachedToken:
    """A verified token with what each request needs, built on the first hit."""

    __slots__ = ("_request", "identity", "key", "not_after", "not_before", "token")

    def __init__(
        self,
        token: bytes,
        identity: Identity,
        key: VerificationKey,
        not_after: float,
        not_before: float,
    ) -> None:
        self.token = token
        self.identity = identity
        self.key = key
        #: Accept while ``now < not_after`` and ``now >= not_before`` (leeway included).
        self.not_after = not_after
        self.not_before = not_before
        self._request: tuple[TokenGuardUser, tuple[str, ...]] | None = None

    @property
    def request_auth(self) -> tuple[TokenGuardUser, tuple[str, ...]]:
        """The Starlette user and the permissions (roles and scopes) for this token.

        Built on the first cache hit, not at insert: a token seen once never pays.
        """
        request = self._request
        if request is None:
            request = self._request = starlette_auth(self.identity)
        return request


class TokenCache:
    """Bounded LRU of verified tokens; ``maxsize=0`` disables it."""

    __slots__ = ("_data", "hits", "maxsize", "misses")

    def __init__(self, maxsize: int = DEFAULT_CACHE_SIZE) -> None:
        if maxsize < 0:
            raise ValueError("cache size must not be negative")
        self.maxsize = maxsize
        self._data: OrderedDict[bytes, CachedToken] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._data)

    def get(self, token: bytes, now: float) -> CachedToken | None:
        """The entry for exactly ``token`` if cached and acceptable at ``now``."""
        index = token[-_INDEX_BYTES:]
        entry = self._data.get(index)
        if entry is None or entry.token != token:
            self.misses += 1
            return None
        if now >= entry.not_after or not entry.key.alive:
            del self._data[index]
            self.misses += 1
            return None
        if now < entry.not_before:
            self.misses += 1
            return None
        self._data.move_to_end(index)
        self.hits += 1
        return entry

    def put(
        self,
        token: bytes,
        identity: Identity,
        key: VerificationKey,
        not_after: float,
        not_before: float,
    ) -> None:
        """Remember a verified token, evicting the least recently used beyond ``maxsize``."""
        if self.maxsize == 0:
            return
        data = self._data
        index = token[-_INDEX_BYTES:]
        size = len(data)
        data[index] = CachedToken(token, identity, key, not_after, not_before)
        if len(data) == size:  # replaced an entry in place: it is now the most recent
            data.move_to_end(index)
        elif size >= self.maxsize:
            data.popitem(last=False)

    def clear(self) -> None:
        """Forget every entry."""
        self._data.clear()
