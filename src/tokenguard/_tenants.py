"""Tenant decisions: an ``Issuer(tenants=<async tid -> bool>)`` asked once per tenant.

- Only tokens that verified in every other respect reach the decision (the validator
  asks last, just before it caches the token), so forged tokens with random ``tid``
  values cost no call and fill no cache.
- Decisions, allow and deny alike, are kept for ``tenant_cache_ttl`` seconds of
  monotonic time, at most ``tenant_cache_size`` tenants (least recently used go first).
  Tenant ids are compared ASCII-case-insensitively; the callable receives the id
  lower-cased.
- Concurrent first requests for one tenant share one call (single flight); the call
  runs detached, as key fetches do, so a cancelled request does not cancel it for the
  others, under asyncio or trio.
- A call that raises, times out (``tenant_check_timeout``) or answers something other
  than a ``bool`` is :class:`TenantUnavailable` (503) for the requests waiting on it and
  is not remembered: the next request asks again.
- A verified token is cached no longer than its tenant's decision: past it, the token is
  verified again and the tenant asked again. A hit of the token cache does no tenant work.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Final

import anyio

from ._background import Job, spawn
from ._config import Issuer, TenantCheck, ascii_fold
from ._errors import TenantUnavailable

__all__ = ["TENANT_RETRY_AFTER", "TenantDecisions"]

logger = logging.getLogger("tokenguard")

#: ``Retry-After`` seconds of a 503 for a failed tenant decision.
TENANT_RETRY_AFTER: Final = 5


class _Flight:
    """One call of the tenant callable, shared by the requests that wait on it."""

    __slots__ = ("allowed", "job")

    def __init__(self) -> None:
        #: The answer; ``None`` until it came (and for ever if the call failed).
        self.allowed: bool | None = None
        self.job: Job | None = None


class TenantDecisions:
    """The decisions of one issuer's ``tenants`` callable, cached, with single flight."""

    def __init__(
        self, issuer: Issuer, check: TenantCheck, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._issuer = issuer.issuer
        self._check = check
        self._ttl = issuer.tenant_cache_ttl
        self._size = issuer.tenant_cache_size
        self._timeout = issuer.tenant_check_timeout
        self._clock = clock
        #: Folded tenant id -> (allowed, monotonic expiry), least recently used first.
        self._decisions: OrderedDict[str, tuple[bool, float]] = OrderedDict()
        self._flights: dict[str, _Flight] = {}

    async def decide(self, tid: str) -> tuple[bool, float]:
        """Whether ``tid`` is accepted, and for how many more seconds that answer holds.

        Raises :class:`TenantUnavailable` when the callable fails or times out.
        """
        key = ascii_fold(tid)
        known = self._lookup(key)
        if known is not None:
            return known
        flight = self._flights.get(key)
        if flight is None or flight.job is None or not flight.job.alive:
            flight = self._start(key)
        await flight.job.wait()  # type: ignore[union-attr]
        if flight.allowed is None:
            raise TenantUnavailable(
                f"tenant decision of {self._issuer} failed", retry_after=TENANT_RETRY_AFTER
            )
        return flight.allowed, self._ttl

    def _lookup(self, key: str) -> tuple[bool, float] | None:
        entry = self._decisions.get(key)
        if entry is None:
            return None
        left = entry[1] - self._clock()
        if left <= 0:
            del self._decisions[key]
            return None
        self._decisions.move_to_end(key)
        return entry[0], left

    def _start(self, key: str) -> _Flight:
        flight = self._flights[key] = _Flight()

        async def call() -> None:
            try:
                with anyio.fail_after(self._timeout):
                    answer: object = await self._check(key)
            except TimeoutError:
                logger.warning(
                    "tenant check timed out (issuer %s)",
                    self._issuer,
                    extra={"issuer": self._issuer},
                )
                return
            except Exception:
                logger.exception(
                    "tenant check failed (issuer %s)", self._issuer, extra={"issuer": self._issuer}
                )
                return
            finally:
                if self._flights.get(key) is flight:
                    del self._flights[key]
            if type(answer) is not bool:
                logger.error(
                    "tenant check answered %s, not a bool (issuer %s)",
                    type(answer).__name__,
                    self._issuer,
                    extra={"issuer": self._issuer},
                )
                return
            self._remember(key, answer)
            flight.allowed = answer

        flight.job = spawn(call, name="tokenguard tenant check")
        return flight

    def _remember(self, key: str, allowed: bool) -> None:
        decisions = self._decisions
        decisions[key] = (allowed, self._clock() + self._ttl)
        decisions.move_to_end(key)
        while len(decisions) > self._size:
            decisions.popitem(last=False)

    def __len__(self) -> int:
        return len(self._decisions)

    async def aclose(self) -> None:
        """Cancel the calls in flight (their waiters get 503) and wait until they ended."""
        flights = list(self._flights.values())
        self._flights.clear()
        jobs = [f.job for f in flights if f.job is not None]
        for job in jobs:
            job.cancel()
        for job in jobs:
            await job.wait()
