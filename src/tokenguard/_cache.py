"""The verified-token cache: a bounded cache of verified tokens and their :class:`Identity`.

Managed-identity clients reuse one token for hours, so most requests hit here and
skip the signature check. A hit still re-checks ``exp``/``nbf`` against the clock,
and an entry dies with the key that verified it.

Lookups are exact: an entry is found by the token's last 32 bytes (the tail of its
signature, so hashing the index costs ~32 bytes of SipHash, not 1.5 KB) and then the
whole stored token is compared to the presented one. A different token never hits,
whatever it shares with a cached one; only tokens that verified are ever stored.
An entry keeps the token as the ``Authorization`` value that carries it
(``b"Bearer " + token``), so the middleware compares a request's header value with
one ``==`` and no copy.

Eviction is "second chance" (CLOCK), an approximation of least-recently-used that
costs a hit one counter increment instead of a reordering: entries leave in insertion
order, except that an entry hit since it was last passed over goes round again.
When a key set drops a key, :meth:`TokenCache.discard_keys` removes the tokens it
verified, so a hit needs no per-request check of the key.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Final

from ._identity import Identity, SharedCredentials, TokenGuardUser, starlette_auth
from ._keys import VerificationKey

__all__ = ["BEARER", "DEFAULT_CACHE_SIZE", "INDEX_BYTES", "CachedToken", "TokenCache"]

DEFAULT_CACHE_SIZE: Final = 10_000
#: An entry's index: the token's last bytes (which are also its header value's last bytes).
INDEX_BYTES: Final = 32
#: The prefix of a stored ``Authorization`` value.
BEARER: Final = b"Bearer "
_BEARER_LEN: Final = len(BEARER)


@dataclass(eq=False, repr=False, slots=True)
class CachedToken:
    """A verified token and what each request needs, the latter built on the first hit."""

    #: ``b"Bearer " + token``: the header value a request presents this token with.
    authorization: bytes
    identity: Identity
    key: VerificationKey
    #: Accept while ``now < not_after`` and ``now >= not_before`` (leeway included).
    not_after: float
    not_before: float
    #: Hits since the eviction scan last passed it (non-zero: a second chance).
    hits: int = field(default=0, init=False)
    #: ``request.user`` and ``request.auth``: see :meth:`request_auth`.
    user: TokenGuardUser | None = field(default=None, init=False)
    credentials: SharedCredentials | None = field(default=None, init=False)

    def request_auth(self, verified_by: object = None) -> tuple[TokenGuardUser, SharedCredentials]:
        """The Starlette user and credentials (roles and scopes) for this token;
        ``verified_by`` is the validator whose cache holds it.

        Built on the first hit, not at insert: a token seen once never pays. Both are
        read-only, so every request with this token can share them.
        """
        user, credentials = self.user, self.credentials
        if user is None or credentials is None:
            user, credentials = starlette_auth(self.identity, verified_by)
            self.user, self.credentials = user, credentials
        return user, credentials


class TokenCache:
    """Bounded cache of verified tokens; ``maxsize=0`` disables it.

    ``index`` maps a token's last :data:`INDEX_BYTES` to its entry. Request-path code
    looks entries up with :meth:`match_authorization` (a header value) or :meth:`get`
    (a token).
    """

    __slots__ = ("_counted_hits", "index", "maxsize", "misses")

    def __init__(self, maxsize: int = DEFAULT_CACHE_SIZE) -> None:
        if maxsize < 0:
            raise ValueError("cache size must not be negative")
        self.maxsize = maxsize
        self.index: OrderedDict[bytes, CachedToken] = OrderedDict()
        #: Hits moved off entries by the eviction scan, or counted by entries now gone.
        self._counted_hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self.index)

    @property
    def hits(self) -> int:
        """Lookups answered from the cache so far (summed over the entries: not for hot paths)."""
        return self._counted_hits + sum(entry.hits for entry in self.index.values())

    def match_authorization(self, value: bytes, now: float) -> CachedToken | None:
        """The entry whose ``Authorization`` value is exactly ``value``, if it is within
        its time window at ``now``; counts the hit. Never raises, never counts a miss.

        This is the cache-hit path of every integration (the middleware and the FastAPI
        dependencies): one slice, one dict lookup, one whole-value compare. ``value`` is
        the header's raw bytes; anything but ``Bearer <token>`` spelt exactly as a
        verified token was stored simply misses and takes the general path.
        """
        entry = self.index.get(value[-INDEX_BYTES:])
        if (
            entry is not None
            and value == entry.authorization
            and entry.not_before <= now < entry.not_after
        ):
            entry.hits += 1
            return entry
        return None

    def get(self, token: bytes, now: float) -> CachedToken | None:
        """The entry for exactly ``token`` if cached and acceptable at ``now``."""
        entry = self.index.get(token[-INDEX_BYTES:])
        if (
            entry is not None
            and len(entry.authorization) == len(token) + _BEARER_LEN
            and entry.authorization.endswith(token)
        ):
            if entry.not_before <= now < entry.not_after:
                entry.hits += 1
                return entry
            if now >= entry.not_after:  # expired for good (not yet valid may become so)
                self._remove(entry)
        self.misses += 1
        return None

    def _remove(self, entry: CachedToken) -> None:
        """Drop ``entry``, which is in the index, keeping its hits in the total."""
        del self.index[entry.authorization[-INDEX_BYTES:]]
        self._counted_hits += entry.hits

    def put(
        self,
        authorization: bytes,
        identity: Identity,
        key: VerificationKey,
        not_after: float,
        not_before: float,
    ) -> None:
        """Remember a verified token, given as ``b"Bearer " + token``, evicting beyond
        ``maxsize`` (second chance). Tokens of a key already dropped are not kept."""
        if self.maxsize == 0 or not key.alive:
            return
        index = self.index
        slot = authorization[-INDEX_BYTES:]
        previous = index.get(slot)
        if previous is not None:  # a token with the same tail: the new one takes its place
            self._remove(previous)
        elif len(index) >= self.maxsize:
            self._evict()
        index[slot] = CachedToken(authorization, identity, key, not_after, not_before)

    def _evict(self) -> None:
        index = self.index
        # Every pass moves an entry's hits to the total, so this ends within one round.
        while True:
            slot, entry = index.popitem(last=False)
            if not entry.hits:
                return
            self._counted_hits += entry.hits
            entry.hits = 0
            index[slot] = entry

    def discard_keys(self, keys: Collection[VerificationKey]) -> None:
        """Forget every token verified by one of ``keys`` (dropped by their key set)."""
        for entry in [e for e in self.index.values() if e.key in keys]:
            self._remove(entry)

    def clear(self) -> None:
        """Forget every entry."""
        for entry in self.index.values():
            self._counted_hits += entry.hits
        self.index.clear()
