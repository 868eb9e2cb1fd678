"""Token validation: structure -> issuer -> key -> signature -> claims -> identity.

Algorithms, issuers, audiences and keys come from configuration; nothing in the
token chooses them. ``jku``, ``x5u``, ``jwk`` and ``x5c`` header members are never
used as key sources. A key that names its ``issuer`` (Entra v2 key sets) verifies only
that issuer's tokens, and by default an identity must be granted some role or scope;
both are judged once per new token, never on a cache hit. So is the tenant decision of
an ``Issuer(tenants=<async callable>)`` (``_tenants``): asked last, for tokens that
verified in every other respect.
"""

from __future__ import annotations

import hashlib
import random
import time
from collections.abc import Awaitable, Callable, Iterable
from types import TracebackType
from typing import Any, Final, Literal, Protocol

import anyio
import httpx

from ._cache import BEARER, DEFAULT_CACHE_SIZE, CachedToken, TokenCache
from ._claims import (
    TENANT_ID,
    check_audience,
    check_key_issuer,
    check_not_id_token,
    check_permissions,
    check_required,
    check_times,
)
from ._config import TENANT_PLACEHOLDER, Issuer, _fold_typ
from ._errors import InvalidToken, Reason, TokenGuardError
from ._identity import Identity, identity_from_claims
from ._keys import MAX_KID_LENGTH, VerificationKey
from ._keyset import (
    FetchOutcome,
    KeyDocument,
    KeySet,
    KeySetStatus,
    PolicyKeySets,
    load_all,
)
from ._responses import log_rejection
from ._tenants import TenantDecisions
from ._token import (
    DEFAULT_MAX_TOKEN_BYTES,
    TokenClaims,
    b64url_decode,
    parse_json_object,
    split_token,
)

__all__ = ["TokenValidator", "ValidationObserver", "fingerprint"]

#: Header members that would change how the JWS is processed; we implement none.
#: A tuple, not a set: with several present the reason must not depend on hash order.
_UNSUPPORTED_HEADER: Final = ("crit", "b64", "zip", "enc")
#: Parsed JWS headers of verified tokens, by their base64url text (issuers reuse a few).
_MAX_KNOWN_HEADERS: Final = 64


ValidationOutcome = Literal["valid", "invalid"]
"""How a validation ended (the ``outcome`` a :class:`ValidationObserver` receives)."""


class ValidationObserver(Protocol):
    """Receives one call per validation and per key fetch (see ``tokenguard.metrics``)."""

    def validation(
        self,
        outcome: ValidationOutcome,
        reason: Reason | None,
        issuer: str | None,
        seconds: float,
        cached: bool,
    ) -> None:
        """``outcome`` is ``"valid"`` or ``"invalid"``; ``reason`` is the error reason."""

    def key_fetch(self, issuer: str, document: KeyDocument, outcome: FetchOutcome) -> None:
        """A discovery or JWKS fetch ended with ``ok``, ``not_modified`` or ``error``."""


def _as_bytes(token: str) -> bytes:
    """The token as the bytes its header carried (the cache key)."""
    try:
        return token.encode("latin-1")
    except UnicodeEncodeError:
        # Not ASCII, so never valid (and never equal to a cached, ASCII, token): these
        # bytes only have to carry it to split_token, which refuses it.
        return token.encode("utf-8", "surrogatepass")


def fingerprint(token: str) -> str:
    """A short, irreversible token fingerprint that is safe to log."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()[:12]


def _loggable(value: str) -> str:
    """A header value fit for a log line: short, printable ASCII only."""
    return value[:64].encode("unicode_escape").decode("ascii")


def _add_context(exc: TokenGuardError, issuer: Issuer, kid: str) -> None:
    """Name the issuer and kid on a rejection, for the log line (never for the caller)."""
    exc.issuer = issuer.issuer
    exc.kid = _loggable(kid)


def _check_signature(
    key: VerificationKey,
    alg: str,
    signing_input: bytes,
    signature: bytes,
    issuer: Issuer,
    claims: dict[str, Any],
) -> None:
    """The key must allow ``alg``, the signature verify, and a key bound to an issuer
    (Entra v2's ``issuer`` member) must have signed a token of that issuer."""
    if alg not in key.algorithms:
        raise InvalidToken("algorithm does not fit the key", reason="algorithm_not_allowed")
    if not key.verify(alg, signing_input, signature):
        raise InvalidToken("signature does not verify", reason="bad_signature")
    if key.issuer is not None and issuer.validate_key_issuer:
        check_key_issuer(key.issuer, claims)


def _identity_of(
    issuer: Issuer,
    claims: dict[str, Any],
    audience: str,
    authorization: bytes,
    header_length: int,
    payload_length: int,
) -> Identity:
    """The identity of verified ``claims``. It keeps the token's bytes (the cache holds
    them anyway), not the decoded claims: they are decoded again if the app reads them."""
    start = len(BEARER) + header_length + 1
    return identity_from_claims(
        claims,
        audience=audience,
        mapping=TokenClaims(authorization, start, start + payload_length),
        roles_path=issuer._roles_path,
        scopes_path=issuer._scopes_path,
    )


class _IssuerState:
    """An issuer's configuration with its key set and precomputed lookups."""

    __slots__ = ("audiences", "config", "keys", "template_parts", "tenant_decisions", "token_types")

    def __init__(
        self,
        config: Issuer,
        keys: KeySet | PolicyKeySets,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self.keys = keys
        check = config.tenant_check
        self.tenant_decisions = (
            None if check is None else TenantDecisions(config, check, clock=monotonic)
        )
        self.audiences = frozenset(config.audiences)
        self.token_types = None if config.token_types is None else frozenset(config.token_types)
        if config.is_template:
            prefix, _, suffix = config.issuer.partition(TENANT_PLACEHOLDER)
            self.template_parts: tuple[str, str] | None = (prefix, suffix)
        else:
            self.template_parts = None

    def check_header(self, alg: str, header: dict[str, Any]) -> None:
        """Refuse an algorithm this issuer does not allow, or a ``typ`` it does not accept."""
        if alg not in self.config.algorithms:
            raise InvalidToken("algorithm not allowed", reason="algorithm_not_allowed")
        if self.token_types is not None:
            typ = header.get("typ")
            if not isinstance(typ, str) or _fold_typ(typ) not in self.token_types:
                raise InvalidToken("token type not accepted", reason="wrong_type")


class TokenValidator:
    """Validates bearer tokens against trusted issuers; owns their key caches.

    ``http_client`` is used for discovery and JWKS fetches; when omitted the validator
    creates one and :meth:`aclose` closes it. Keys are refreshed in the background
    (started by :meth:`warm_up` or by the first validation; :meth:`aclose` stops it),
    under asyncio or trio. ``clock`` gives token time (wall-clock seconds) and
    ``monotonic`` cache time; ``sleep`` waits in ``monotonic`` time and ``jitter``
    (a number in [0, 1)) places each background refresh: tests inject all four.
    """

    def __init__(
        self,
        issuers: Iterable[Issuer],
        *,
        http_client: httpx.AsyncClient | None = None,
        cache_size: int = DEFAULT_CACHE_SIZE,
        max_token_bytes: int = DEFAULT_MAX_TOKEN_BYTES,
        reject_id_tokens: bool = True,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
        jitter: Callable[[], float] = random.random,
        observer: ValidationObserver | None = None,
    ) -> None:
        configs = list(issuers)
        if not configs:
            raise ValueError("at least one Issuer is required")
        if len({c.issuer for c in configs}) != len(configs):
            raise ValueError(
                "each issuer may be configured once; for one issuer with several key "
                "sources (Azure AD B2C policies) give one Issuer with discovery_urls"
            )
        if max_token_bytes < 256:
            raise ValueError("max_token_bytes must be at least 256")
        self._own_client = http_client is None
        self._http_client = http_client
        self.clock = clock
        self.observer = observer
        self.max_token_bytes = max_token_bytes
        self.reject_id_tokens = reject_id_tokens
        self.cache = TokenCache(cache_size)
        self._headers: dict[bytes, tuple[dict[str, Any], str, str]] = {}
        fetch_observer = observer.key_fetch if observer is not None else None

        def key_set(config: Issuer) -> KeySet:
            return KeySet(
                config,
                self._client,
                clock=monotonic,
                sleep=sleep,
                jitter=jitter,
                observer=fetch_observer,
                on_dropped=self.cache.discard_keys,
            )

        states = [
            _IssuerState(
                c,
                PolicyKeySets(c, key_set) if c.discovery_urls else key_set(c),
                monotonic,
            )
            for c in configs
        ]
        self._exact = {s.config.issuer: s for s in states if s.template_parts is None}
        self._templates = [s for s in states if s.template_parts is not None]
        self._states = states
        self._only = states[0] if len(states) == 1 else None

    @property
    def issuers(self) -> tuple[Issuer, ...]:
        """The configured issuers."""
        return tuple(s.config for s in self._states)

    def _client(self) -> httpx.AsyncClient:
        if self._http_client is None:
            timeout = max(s.config.fetch_timeout for s in self._states)
            self._http_client = httpx.AsyncClient(
                timeout=httpx.Timeout(timeout), follow_redirects=False
            )
        return self._http_client

    async def aclose(self) -> None:
        """Stop the background key refreshes and close the HTTP client if this validator
        created it. A later validation or :meth:`warm_up` starts again."""
        for state in self._states:
            await state.keys.aclose()
            if state.tenant_decisions is not None:
                await state.tenant_decisions.aclose()
        if self._own_client and self._http_client is not None:
            await self._http_client.aclose()
            self._http_client = None

    async def __aenter__(self) -> TokenValidator:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    # -- public API -------------------------------------------------------------

    def cached(self, token: str | bytes) -> Identity | None:
        """The identity of an already verified token, or ``None``; never raises or waits.

        ``token`` may be the raw bytes of the Authorization header's credentials.
        """
        if len(token) > self.max_token_bytes:
            return None
        entry = self._cached_entry(_as_bytes(token) if isinstance(token, str) else token)
        return None if entry is None else entry.identity

    def _cached_authorization(self, value: bytes) -> CachedToken | None:
        """The cache entry whose ``Authorization`` value is exactly ``value`` (bytes, as
        sent: ``Bearer <token>``), within its time window, or ``None``; never raises.

        The cache-hit path of the integrations (the middleware inlines the same two
        calls); a miss is not counted: the general path that follows counts it.
        """
        entry = self.cache.match_authorization(value, self.clock())
        if entry is not None and self.observer is not None:
            self.observer.validation("valid", None, entry.identity.issuer, 0.0, True)
        return entry

    def _cached_entry(self, raw: bytes) -> CachedToken | None:
        """The cache entry of an already verified token (bytes), or ``None``.

        For integrations on the request path (the middleware): the entry carries the
        Starlette user and permissions, built once per token instead of per request.
        """
        entry = self.cache.get(raw, self.clock())
        if entry is not None and self.observer is not None:
            self.observer.validation("valid", None, entry.identity.issuer, 0.0, True)
        return entry

    async def validate(self, token: str) -> Identity:
        """Verify ``token`` and return the caller's :class:`Identity`.

        Raises :class:`InvalidToken` (401), or :class:`KeysUnavailable` (503) when the
        issuer's keys cannot be had.
        """
        if len(token) > self.max_token_bytes:
            error = InvalidToken("token exceeds the size limit", reason="token_too_large")
            if self.observer is not None:
                self.observer.validation("invalid", error.reason, None, 0.0, False)
            raise self._rejected(error, token)
        raw = _as_bytes(token)
        entry = self._cached_entry(raw)
        if entry is not None:
            return entry.identity
        return await self._validate_uncached(raw, token)

    async def validate_credentials(self, raw: bytes) -> tuple[Identity, CachedToken | None]:
        """:meth:`validate` for the credentials of an ``Authorization`` header (bytes).

        Returns the identity and, when the token was verified before, its cache entry,
        whose Starlette user and credentials every request with the token can share.
        The integration API: the middleware and the FastAPI dependency call it (and a
        subclass may wrap it); its cache-hit and verification halves are private.
        """
        entry = self._cached_entry(raw)
        if entry is not None:
            return entry.identity, entry
        return await self._validate_uncached(raw), None

    async def _validate_uncached(self, raw: bytes, token: str | None = None) -> Identity:
        """:meth:`validate` for a token whose cache lookup just missed (no second lookup).

        ``raw`` is the token's bytes, as looked up with :meth:`_cached_entry`; ``token``
        its text when the caller has it (for the log line of a rejection).
        """
        observer = self.observer
        started = time.perf_counter() if observer is not None else 0.0
        try:
            identity = await self._verify(raw, self.clock())
        except TokenGuardError as exc:
            if observer is not None:
                seconds = time.perf_counter() - started
                observer.validation("invalid", exc.reason, exc.issuer, seconds, False)
            raise self._rejected(exc, raw.decode("latin-1") if token is None else token) from None
        if observer is not None:
            seconds = time.perf_counter() - started
            observer.validation("valid", None, identity.issuer, seconds, False)
        return identity

    def _rejected(self, exc: TokenGuardError, token: str) -> TokenGuardError:
        exc.fingerprint = fingerprint(token)
        log_rejection(exc)
        return exc

    async def warm_up(self) -> None:
        """Load every issuer's keys now (concurrently) and keep them refreshed in the
        background; then raise :class:`KeysUnavailable` naming each issuer whose keys
        could not be had (the others are loaded, and the failed ones retried)."""
        await load_all([state.keys for state in self._states])

    def status(self) -> list[KeySetStatus]:
        """Key-set snapshots, one per issuer."""
        return [s.keys.status() for s in self._states]

    def is_ready(self, max_stale: float | None = None) -> bool:
        """True when every issuer has usable keys (fetched within ``max_stale`` if given)."""
        for status in self.status():
            if not status.usable:
                return False
            fetched = status.age
            if max_stale is not None and (fetched is None or fetched > max_stale):
                return False
        return True

    # -- the pipeline -----------------------------------------------------------

    async def _verify(self, raw: bytes, now: float) -> Identity:
        signing_input, h64, p64, s64 = split_token(raw, self.max_token_bytes)
        known = self._headers.get(h64)
        if known is None:
            header = parse_json_object(b64url_decode(h64))
            alg, kid = self._check_header(header)
        else:
            header, alg, kid = known
        only = self._only
        key = None if only is None else only.keys.get(kid)
        if only is not None and key is None:
            # One issuer: a kid its key set lacks is fetched, or refused, before the
            # payload is even decoded, so a flood of random kids parses no claims.
            try:
                key = await only.keys.resolve(kid)
            except TokenGuardError as exc:
                _add_context(exc, only.config, kid)
                raise
        claims = parse_json_object(b64url_decode(p64))
        signature = b64url_decode(s64)
        iss = claims.get("iss")
        state = self._exact.get(iss) if type(iss) is str else None
        if state is None:  # a tenant template, or no issuer we know
            state = self._select_issuer(claims)
        issuer = state.config
        try:
            state.check_header(alg, header)
            if key is None:  # several issuers: the payload's iss chose the key set
                key = state.keys.get(kid) or await state.keys.resolve(kid)
            _check_signature(key, alg, signing_input, signature, issuer, claims)
            audience, not_after, not_before = self._check_claims(state, claims, now)
            # The cache keeps the token as the Authorization value that carries it.
            authorization = BEARER + raw
            identity = _identity_of(issuer, claims, audience, authorization, len(h64), len(p64))
            if issuer.require_roles_or_scopes:
                check_permissions(identity)
            decided_for = float("inf")
            if state.tenant_decisions is not None:
                # Last: only a token good in every other respect costs a call.
                allowed, decided_for = await state.tenant_decisions.decide(claims["tid"])
                if not allowed:
                    raise InvalidToken("tenant not allowed", reason="wrong_tenant")
        except TokenGuardError as exc:
            _add_context(exc, issuer, kid)
            raise
        if known is None:
            self._remember_header(h64, header, alg, kid)
        # The entry answers no longer than the key set stays usable (its monotonic
        # deadline moved to token time): past it the token is verified again, so it
        # gets a 503 like any other once the keys are too old, and costs the hit path
        # nothing.
        # Likewise no longer than its tenant's decision: past it the tenant is asked again.
        now = self.clock()
        usable_until = now + min(state.keys.usable_for(), decided_for)
        self.cache.put(authorization, identity, key, min(not_after, usable_until), not_before)
        return identity

    def _remember_header(self, h64: bytes, header: dict[str, Any], alg: str, kid: str) -> None:
        # Only headers of tokens that verified are remembered, so no caller can fill
        # this; rotations add a header per key, so start afresh when it is full.
        if len(self._headers) >= _MAX_KNOWN_HEADERS:
            self._headers.clear()
        self._headers[h64] = (header, alg, kid)

    def _check_header(self, header: dict[str, Any]) -> tuple[str, str]:
        alg = header.get("alg")
        if not isinstance(alg, str):
            raise InvalidToken("alg missing", reason="malformed")
        kid = header.get("kid")
        for name in _UNSUPPORTED_HEADER:
            if name in header:
                reason: Reason = "unsupported_critical" if name == "crit" else "malformed"
                raise InvalidToken(f"unsupported header member {name}", reason=reason)
        if kid is None:
            raise InvalidToken("kid missing", reason="unknown_key")
        if not isinstance(kid, str):
            raise InvalidToken("kid is not a string", reason="malformed")
        if not kid or len(kid) > MAX_KID_LENGTH:
            raise InvalidToken("kid out of bounds", reason="unknown_key")
        return alg, kid

    def _select_issuer(self, claims: dict[str, Any]) -> _IssuerState:
        """The issuer of a token whose ``iss`` is not one of the exact issuers."""
        iss = claims.get("iss")
        if not isinstance(iss, str):
            raise InvalidToken(
                "iss missing", reason="missing_claim" if iss is None else "malformed"
            )
        tid = claims.get("tid")
        for state in self._templates:
            prefix, suffix = state.template_parts  # type: ignore[misc]
            if not (isinstance(tid, str) and TENANT_ID.fullmatch(tid)):
                continue
            if iss == prefix + tid + suffix:
                if not state.config.tenant_allowed(tid):
                    raise InvalidToken("tenant not allowed", reason="wrong_tenant")
                return state
        raise InvalidToken("issuer not accepted", reason="wrong_issuer")

    def _check_claims(
        self, state: _IssuerState, claims: dict[str, Any], now: float
    ) -> tuple[str, float, float]:
        """Check the claims at ``now``; return the audience matched and the window in
        which the token stays acceptable, leeway included."""
        not_after, not_before = check_times(claims, now, state.config.leeway)
        audience = check_audience(claims.get("aud"), state.audiences)
        check_required(claims, state.config.required_claims)
        if self.reject_id_tokens:
            check_not_id_token(claims)
        return audience, not_after, not_before
