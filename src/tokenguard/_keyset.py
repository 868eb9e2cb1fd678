"""One issuer's signing keys: OIDC discovery + JWKS, cached and refreshed.

- Keys are refreshed in the background before they expire, whether or not requests
  arrive: every fetch, once done, arms a timer for the next one, at a random point
  near the end of the keys' lifetime (so a fleet started together does not refresh
  in step); after a failure the timer retries every ``error_backoff``.
- Requests with a known ``kid`` never wait: :meth:`KeySet.get` is synchronous; if a
  refresh is due and none runs (the timer's loop has ended), it starts one.
- Concurrent misses share one fetch (single flight); the fetch runs detached, so a
  cancelled request does not cancel it for the others.
- An unknown ``kid`` triggers at most one refresh per ``refresh_cooldown``; unknown
  kids are remembered for that long.
- A failed refresh keeps the last good keys for ``max_stale`` past their lifetime.
- Fetches and the timer run under asyncio or trio (``_background``);
  :meth:`KeySet.aclose` stops both.
- A failure's text names the document, its URL and the cause ("JWKS
  https://.../keys: connection refused (ConnectError)"), in the log message itself and
  in :class:`KeysUnavailable`: a wrong URL or issuer is found from the first log line.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from typing import Final, Literal

import anyio
import httpx

from ._background import Job, spawn
from ._config import Issuer, check_url
from ._errors import InvalidToken, KeysUnavailable
from ._fetch import FetchError, FetchResult, fetch_json, retry_after_seconds
from ._keys import VerificationKey, load_jwks

__all__ = ["FetchObserver", "KeySet", "KeySetStatus", "PolicyKeySets", "load_all"]

logger = logging.getLogger("tokenguard")

MAX_REMEMBERED_UNKNOWN: Final = 4096
#: Refresh between this long and half as long before the cache lifetime ends (at a
#: random point; at most a fifth of the lifetime ahead).
REFRESH_AHEAD: Final = 300.0
_REFRESH_WINDOW: Final = 0.2
#: The background timer retries a failed fetch no sooner than this, whatever
#: ``error_backoff`` says (0 would otherwise fetch in a tight loop while the issuer is down).
MIN_RETRY_DELAY: Final = 1.0

KeyDocument = Literal["discovery", "jwks"]
"""Which document a key fetch asked for."""
FetchOutcome = Literal["ok", "not_modified", "error"]
"""How a discovery or JWKS fetch ended."""
FetchObserver = Callable[[str, KeyDocument, FetchOutcome], None]
"""Called as ``observer(issuer, document, outcome)``; document is ``discovery`` or ``jwks``,
outcome ``ok``, ``not_modified`` or ``error``."""


@dataclass(frozen=True, slots=True)
class KeySetStatus:
    """A snapshot of one issuer's key set, for readiness checks and metrics."""

    issuer: str
    loaded: bool
    usable: bool
    stale: bool
    key_count: int
    kids: tuple[str, ...]
    #: Seconds since the last successful fetch (a 304 counts: the keys were confirmed);
    #: stays below the keys' lifetime while the issuer answers.
    age: float | None
    #: Seconds since the keys last changed (added, dropped or replaced).
    since_change: float | None
    last_error: str | None


class KeySet:
    """The cached keys of one issuer; shared by the validator's requests."""

    def __init__(
        self,
        issuer: Issuer,
        client: Callable[[], httpx.AsyncClient],
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
        jitter: Callable[[], float] = random.random,
        observer: FetchObserver | None = None,
        on_dropped: Callable[[set[VerificationKey]], None] | None = None,
    ) -> None:
        self.issuer = issuer
        #: Called with the keys a refresh dropped or replaced (the validator's cache
        #: forgets the tokens they verified).
        self._on_dropped = on_dropped
        self._client = client
        self._clock = clock
        #: Waits ``seconds`` of ``clock`` time (tests inject a sleep on their fake clock).
        self._sleep = sleep
        #: A number in [0, 1) that places each refresh in its window.
        self._jitter = jitter
        self._observer = observer
        self._allowed = frozenset(issuer.algorithms)
        self._keys: dict[str, VerificationKey] = {}
        self._jwks_uri: str | None = issuer.jwks_uri
        #: The discovery document's ``cloud_instance_name`` when the issuer validates it.
        self._cloud_instance: str | None = None
        self._discovery_expires = 0.0
        self._etag: str | None = None
        self._fetched_at: float | None = None
        self._changed_at: float | None = None
        self._expires = 0.0
        self._usable_until = 0.0
        self._refresh_at = float("inf")
        #: When an unknown kid last triggered a refresh (routine refreshes do not count:
        #: a key rotated in just after one must still be fetched on its first use).
        self._last_kid_refresh = -float("inf")
        self._retry_at = -float("inf")
        self._last_error: str | None = None
        #: The fetch in flight (shared by every request that needs it).
        self._flight: Job | None = None
        #: The background timer waiting for the next refresh.
        self._timer: Job | None = None
        #: Bumped by aclose: a fetch of an earlier epoch arms no timer.
        self._epoch = 0
        self._unknown: dict[str, float] = {}

    # -- hot path ---------------------------------------------------------------

    def get(self, kid: str) -> VerificationKey | None:
        """The usable key for ``kid``, without waiting; may start a background refresh."""
        now = self._clock()
        if now >= self._refresh_at:
            self._start_refresh()  # the timer's loop may have ended; no-op while in flight
        key = self._keys.get(kid)
        if key is not None and now < self._usable_until:
            return key
        return None

    # -- slow path --------------------------------------------------------------

    async def resolve(self, kid: str) -> VerificationKey:
        """Find ``kid`` after :meth:`get` missed: load, refresh or refuse.

        Raises ``InvalidToken(reason="unknown_key")`` or :class:`KeysUnavailable`.
        """
        now = self._clock()
        usable = now < self._usable_until
        if not usable:
            # Nothing usable: every request needs the fetch, shared.
            if not self._in_flight() and now < self._retry_at:
                raise self._unavailable(now)
            await self._shared_refresh()
        elif self._unknown.get(kid, -1.0) > now:
            raise InvalidToken("unknown key id (remembered)", reason="unknown_key")
        elif self._in_flight():
            await self._shared_refresh()  # joins the fetch in flight
        elif now - self._last_kid_refresh >= self.issuer.refresh_cooldown:
            self._last_kid_refresh = now
            await self._shared_refresh()
        now = self._clock()
        key = self._keys.get(kid)
        if now < self._usable_until:
            if key is not None:
                return key
            self._remember_unknown(kid, now)
            raise InvalidToken("unknown key id", reason="unknown_key")
        raise self._unavailable(now)

    async def load(self) -> None:
        """Fetch keys now (warm-up) and keep them refreshed in the background; raise
        :class:`KeysUnavailable` if none are usable (the background retries go on).

        Usable keys that are not yet due for refresh and already kept refreshed on this
        event loop are not fetched again: a second warm-up of the same validator (the
        middleware's and a FastAPI lifespan's, say) has nothing to add.
        """
        now = self._clock()
        timer = self._timer
        fresh = now < self._usable_until and now < self._refresh_at
        if not (fresh and timer is not None and timer.alive):
            await self._shared_refresh()
        if self._clock() >= self._usable_until:
            raise self._unavailable(self._clock())

    def _unavailable(self, now: float) -> KeysUnavailable:
        wait = self._retry_at - now if self._retry_at > now else self.issuer.error_backoff
        return KeysUnavailable(
            f"keys of {self.issuer.issuer} unavailable: {self._last_error or 'not loaded'}",
            retry_after=retry_after_seconds(wait),
        )

    def _remember_unknown(self, kid: str, now: float) -> None:
        if len(self._unknown) >= MAX_REMEMBERED_UNKNOWN:
            self._unknown = {k: t for k, t in self._unknown.items() if t > now}
            if len(self._unknown) >= MAX_REMEMBERED_UNKNOWN:
                self._unknown.clear()
        self._unknown[kid] = now + self.issuer.refresh_cooldown

    # -- refresh ----------------------------------------------------------------

    def _in_flight(self) -> bool:
        return self._flight is not None and self._flight.alive

    def _start_refresh(self) -> Job:
        flight = self._flight
        if flight is None or not flight.alive:
            flight = self._flight = spawn(self._refresh, name="tokenguard key fetch")
        return flight

    async def _shared_refresh(self) -> None:
        # The fetch runs detached: a cancelled request stops waiting, the fetch goes on.
        await self._start_refresh().wait()

    async def _refresh(self) -> None:
        epoch = self._epoch
        try:
            await self._fetch()
        except FetchError as exc:
            self._record_failure(str(exc))
        except Exception as exc:  # a bug or an unexpected client error must not kill the task
            logger.exception("unexpected error while fetching keys")
            self._record_failure(type(exc).__name__)
        # Not in a finally: a fetch cancelled by aclose must not arm a timer.
        if epoch == self._epoch:
            self._arm_timer()

    def _arm_timer(self) -> None:
        """Schedule the next background refresh (replacing a timer set for another time)."""
        if self._timer is not None:
            self._timer.cancel()
        floor = 0.0 if self._last_error is None else MIN_RETRY_DELAY
        due = max(self._refresh_at, self._clock() + floor)
        self._timer = spawn(lambda: self._tick(due), name="tokenguard key refresh timer")

    async def _tick(self, due: float) -> None:
        while (delay := due - self._clock()) > 0:
            await self._sleep(delay)
        self._start_refresh()  # its end arms the next timer

    async def aclose(self) -> None:
        """Stop the background timer and any fetch in flight, and wait until they ended.

        The key set stays usable: the next request or warm-up fetches (and arms the
        timer) again.
        """
        self._epoch += 1
        jobs = [job for job in (self._timer, self._flight) if job is not None]
        self._timer = self._flight = None
        for job in jobs:
            job.cancel()
        for job in jobs:
            await job.wait()

    def _record_failure(self, why: str) -> None:
        now = self._clock()
        self._last_error = why
        self._retry_at = now + self.issuer.error_backoff
        self._refresh_at = self._retry_at  # keep retrying in the background
        # The facts go in the text too: a plain handler prints only the message.
        facts = {"issuer": self.issuer.issuer, "error": why}
        if self._keys and now < self._usable_until:
            logger.warning(
                "key refresh failed; serving last good keys (issuer %s): %s",
                self.issuer.issuer,
                why,
                extra=facts,
            )
        else:
            logger.error(
                "key fetch failed; no usable keys (issuer %s): %s",
                self.issuer.issuer,
                why,
                extra=facts,
            )

    def _notify(self, document: KeyDocument, outcome: FetchOutcome) -> None:
        if self._observer is not None:
            self._observer(self.issuer.issuer, document, outcome)

    def _clamp(self, lifetime: float | None) -> float:
        issuer = self.issuer
        ttl = issuer.default_cache_ttl if lifetime is None else lifetime
        return min(max(ttl, issuer.min_cache_ttl), issuer.max_cache_ttl)

    async def _fetch(self) -> None:
        issuer = self.issuer
        client = self._client()
        if issuer.discovery_url is not None and (
            self._jwks_uri is None or self._clock() >= self._discovery_expires
        ):
            try:
                result = await self._fetch_discovery(client, issuer.discovery_url)
                self._jwks_uri = self._read_discovery(result.document)
            except FetchError as exc:
                self._notify("discovery", "error")
                if self._jwks_uri is None:
                    raise
                # The JWKS location rarely moves: keep using the last one we were told.
                logger.warning(
                    "discovery refresh failed; using the last jwks_uri %s: %s",
                    self._jwks_uri,
                    exc,
                    extra={"issuer": issuer.issuer, "error": str(exc)},
                )
                self._discovery_expires = self._clock() + issuer.error_backoff
            else:
                self._notify("discovery", "ok")
                self._discovery_expires = self._clock() + self._clamp(result.lifetime)
        assert self._jwks_uri is not None
        try:
            result = await fetch_json(
                client,
                self._jwks_uri,
                timeout=issuer.fetch_timeout,
                max_bytes=issuer.max_jwks_bytes,
                etag=self._etag if self._keys else None,
            )
            if result.document is None:
                self._notify("jwks", "not_modified")
            else:
                try:
                    keys = load_jwks(
                        result.document,
                        self._allowed,
                        issuer.max_keys,
                        cloud_instance=self._cloud_instance,
                    )
                except ValueError as exc:
                    raise FetchError(str(exc)) from exc
                self._install(keys)
                self._notify("jwks", "ok")
        except FetchError as exc:
            self._notify("jwks", "error")
            raise FetchError(f"JWKS {self._jwks_uri}: {exc}") from exc
        now = self._clock()
        ttl = self._clamp(result.lifetime)
        self._etag = result.etag
        self._fetched_at = now
        self._expires = now + ttl
        self._usable_until = self._expires + issuer.max_stale
        ahead = min(REFRESH_AHEAD, ttl * _REFRESH_WINDOW)
        self._refresh_at = self._expires - ahead * (1.0 - self._jitter() / 2)
        self._retry_at = -float("inf")
        self._last_error = None

    async def _fetch_discovery(self, client: httpx.AsyncClient, url: str) -> FetchResult:
        issuer = self.issuer
        try:
            return await fetch_json(
                client, url, timeout=issuer.fetch_timeout, max_bytes=issuer.max_jwks_bytes
            )
        except FetchError as exc:
            raise FetchError(f"discovery document {url}: {exc}") from exc

    def _read_discovery(self, document: object) -> str:
        where = f"discovery document {self.issuer.discovery_url}"
        if not isinstance(document, dict):
            raise FetchError(f"{where} is not a JSON object")
        advertised = document.get("issuer")
        if advertised != self.issuer.issuer:
            # Both are configuration, not secrets: a typo shows at a glance.
            named = f"issuer {advertised[:200]!r}" if isinstance(advertised, str) else "no issuer"
            raise FetchError(f"{where} names {named} but the Issuer expects {self.issuer.issuer!r}")
        jwks_uri = document.get("jwks_uri")
        if not isinstance(jwks_uri, str):
            raise FetchError(f"{where} names no jwks_uri")
        try:
            checked = check_url(jwks_uri, "jwks_uri")
        except ValueError as exc:
            raise FetchError(f"{where}: {exc}") from exc
        if self.issuer.validate_cloud_instance:
            cloud = document.get("cloud_instance_name")
            self._cloud_instance = cloud if isinstance(cloud, str) and cloud.strip() else None
            if self._cloud_instance is None:
                # As Microsoft.IdentityModel does: nothing to compare keys with.
                logger.warning(
                    "discovery document names no cloud_instance_name; keys are not checked",
                    extra={"issuer": self.issuer.issuer},
                )
        return checked

    def _install(self, keys: dict[str, VerificationKey]) -> None:
        old = self._keys
        for kid, key in keys.items():
            previous = old.get(kid)
            if previous is not None and previous.same_key(key):
                keys[kid] = previous  # keep the object: its cached tokens stay valid
        dropped = {key for kid, key in old.items() if keys.get(kid) is not key}
        for key in dropped:
            key.alive = False  # dropped or replaced: its cached tokens die with it
        if dropped and self._on_dropped is not None:
            self._on_dropped(dropped)
        if keys.keys() != old.keys() or any(old[k] is not key for k, key in keys.items()):
            self._changed_at = self._clock()
        self._keys = keys
        self._unknown = {k: t for k, t in self._unknown.items() if k not in keys}
        logger.info(
            "keys loaded",
            extra={"issuer": self.issuer.issuer, "kids": sorted(keys)},
        )

    # -- status -----------------------------------------------------------------

    def usable_for(self) -> float:
        """Seconds the keys stay usable without another successful fetch (may be <= 0)."""
        return self._usable_until - self._clock()

    @property
    def jwks_uri(self) -> str | None:
        """The JWKS URL in use: configured, or read from the discovery document."""
        return self._jwks_uri

    @property
    def lifetime(self) -> float | None:
        """The cache lifetime the last successful fetch granted (the issuer's
        ``Cache-Control``/``Expires`` clamped to the Issuer's bounds); ``None`` before one."""
        return None if self._fetched_at is None else self._expires - self._fetched_at

    def current_keys(self) -> tuple[VerificationKey, ...]:
        """The keys held now, ordered by kid (``tokenguard check`` lists them)."""
        return tuple(self._keys[kid] for kid in sorted(self._keys))

    def status(self) -> KeySetStatus:
        """A snapshot for readiness checks and metrics."""
        now = self._clock()
        fetched = None if self._fetched_at is None else now - self._fetched_at
        return KeySetStatus(
            issuer=self.issuer.issuer,
            loaded=bool(self._keys),
            usable=bool(self._keys) and now < self._usable_until,
            stale=bool(self._keys) and now >= self._expires,
            key_count=len(self._keys),
            kids=tuple(sorted(self._keys)),
            age=fetched,
            since_change=None if self._changed_at is None else now - self._changed_at,
            last_error=self._last_error,
        )


class PolicyKeySets:
    """The keys of one issuer that publishes several key sources (``discovery_urls``).

    Azure AD B2C gives every policy (user flow) of a tenant its own discovery document
    and JWKS, and signs every policy's tokens with the same ``iss``; custom policies
    may sign with keys of their own. One :class:`KeySet` per document, each refreshed
    on its own, fetched first when a token needs it; a kid is looked up in each, in the
    order configured. An unknown kid refreshes each set at most once per
    ``refresh_cooldown``, as for a single set. Policies of one tenant sign with the
    tenant's keys, so a kid names the same key in every set that has it.
    """

    def __init__(self, issuer: Issuer, key_set: Callable[[Issuer], KeySet]) -> None:
        self.issuer = issuer
        self.sets = tuple(
            key_set(replace(issuer, discovery_urls=(), discovery_url=url))
            for url in issuer.discovery_urls
        )

    def get(self, kid: str) -> VerificationKey | None:
        """The usable key for ``kid`` in any of the sets, without waiting."""
        for keys in self.sets:
            key = keys.get(kid)
            if key is not None:
                return key
        return None

    async def resolve(self, kid: str) -> VerificationKey:
        """:meth:`KeySet.resolve` across the sets: the first that has ``kid`` answers;
        :class:`KeysUnavailable` if none has it and some set has no usable keys."""
        outage: KeysUnavailable | None = None
        # Sets without usable keys first: they must be fetched anyway, and the kid is
        # more likely there than in a set that already lacked it (which a refresh for
        # an unknown kid would fetch again).
        for keys in sorted(self.sets, key=lambda keys: keys.usable_for() > 0):
            try:
                return await keys.resolve(kid)
            except KeysUnavailable as exc:
                outage = outage or exc
            except InvalidToken:
                continue
        if outage is not None:
            raise outage  # that set might have had the key
        raise InvalidToken("unknown key id", reason="unknown_key")

    async def load(self) -> None:
        """Load every set concurrently; :class:`KeysUnavailable` if any has none."""
        await load_all(self.sets)

    async def aclose(self) -> None:
        """Stop every set's background work."""
        for keys in self.sets:
            await keys.aclose()

    def usable_for(self) -> float:
        """The shortest time any set stays usable (tokens are cached no longer)."""
        return min(keys.usable_for() for keys in self.sets)

    def status(self) -> KeySetStatus:
        """One snapshot for the issuer: usable only when every set is."""
        parts = [keys.status() for keys in self.sets]
        ages = [p.age for p in parts]
        changes = [p.since_change for p in parts if p.since_change is not None]
        kids = sorted({kid for p in parts for kid in p.kids})
        return KeySetStatus(
            issuer=self.issuer.issuer,
            loaded=all(p.loaded for p in parts),
            usable=all(p.usable for p in parts),
            stale=any(p.stale for p in parts),
            key_count=len(kids),
            kids=tuple(kids),
            age=None if None in ages else max(a for a in ages if a is not None),
            since_change=min(changes) if changes else None,
            last_error=next((p.last_error for p in parts if p.last_error), None),
        )


async def load_all(key_sets: Sequence[KeySet | PolicyKeySets]) -> None:
    """Load ``key_sets`` concurrently, then raise :class:`KeysUnavailable` for those
    that have no usable keys: a lone failure as it is, several as one error naming each
    (in the order given) with the soonest ``retry_after``."""
    failures: dict[int, KeysUnavailable] = {}

    async def load(index: int, keys: KeySet | PolicyKeySets) -> None:
        try:
            await keys.load()
        except KeysUnavailable as exc:
            failures[index] = exc

    async with anyio.create_task_group() as group:
        for index, keys in enumerate(key_sets):
            group.start_soon(load, index, keys)
    errors = [failures[index] for index in sorted(failures)]
    if len(errors) == 1:
        raise errors[0]
    if errors:
        raise KeysUnavailable(
            "; ".join(str(e) for e in errors), retry_after=min(e.retry_after for e in errors)
        )
