"""Background key refresh over time, under asyncio and trio (``_keyset``, ``_background``).

Time is an injected fake clock: the validator's wall clock, its monotonic clock and the
issuer's clock are one :class:`FakeClock`, and the refresh timer sleeps on it
(``sleep=clock.sleep``; ``clock.validator_clocks()`` gives all three), so a test moves
hours in microseconds. No test sends a request unless it says so: the point is what
happens without traffic.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any, NamedTuple

import anyio
import httpx
import pytest
from starlette.applications import Starlette
from starlette.routing import Route

from tokenguard import (
    InvalidToken,
    KeysUnavailable,
    TokenValidator,
)
from tokenguard._keyset import MIN_RETRY_DELAY
from tokenguard.readiness import readiness_endpoint, readiness_report
from tokenguard.testing import LocalIssuer

from .conftest import VAULT
from .helpers import (
    FakeClock,
    RecordingObserver,
    SwitchableIssuer,
    assert_key_retired,
    bearer,
    guarded_app,
    until,
)

pytestmark = pytest.mark.anyio

TTL = 3600.0  # LocalIssuer's JWKS max-age
#: With ``jitter=lambda: 0.5`` a refresh is due this long after each fetch.
REFRESH_AFTER = TTL - 300 * 0.75
BACKOFF = 5.0


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(time.time())


@pytest.fixture
def issuer(clock: FakeClock) -> LocalIssuer:
    return LocalIssuer(key_type="EC", clock=clock)


def make(
    issuer: LocalIssuer,
    clock: FakeClock,
    *,
    jitter: Callable[[], float] = lambda: 0.5,
    observer: RecordingObserver | None = None,
    **options: object,
) -> tuple[TokenValidator, SwitchableIssuer]:
    server = SwitchableIssuer(issuer)
    options.setdefault("error_backoff", BACKOFF)
    validator = server.validator(
        VAULT, options, jitter=jitter, observer=observer, **clock.validator_clocks()
    )
    return validator, server


@asynccontextmanager
async def warmed(
    issuer: LocalIssuer, clock: FakeClock, **options: Any
) -> AsyncIterator[tuple[TokenValidator, SwitchableIssuer]]:
    """:func:`make`'s validator and issuer, warmed up; the validator is closed at the end."""
    validator, server = make(issuer, clock, **options)
    try:
        await validator.warm_up()
        yield validator, server
    finally:
        await validator.aclose()


async def refreshed(validator: TokenValidator) -> None:
    """Wait until every key set was fetched (or confirmed) at the current fake time."""
    await until(lambda: all(s.age == 0 for s in validator.status()))


async def quiet() -> None:
    """Let every task run until all are blocked: what was going to happen has happened."""
    await anyio.wait_all_tasks_blocked()


# -- refreshing without traffic ---------------------------------------------------------


async def test_idle_validator_keeps_refreshing_and_stays_ready(
    issuer: LocalIssuer, clock: FakeClock
) -> None:
    async with warmed(issuer, clock) as (validator, server):
        app = Starlette(routes=[Route("/readyz", readiness_endpoint(validator, max_age=TTL))])
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://app") as http:
            # Six lifetimes in steps of 600 s, with no token request at all.
            for step in range(1, 37):
                before = server.count("/keys")
                clock.advance(600)
                if clock.now - fetched_at(validator, clock) >= REFRESH_AFTER:
                    await refreshed(validator)
                    assert server.count("/keys") == before + 1, step
                else:
                    await quiet()  # the timer had its chance: no fetch before it is due
                    assert server.count("/keys") == before, step
                report = readiness_report(validator, max_age=TTL)
                assert report["ready"], (step, report)
                assert report["issuers"][0]["age_seconds"] < REFRESH_AFTER
                response = await http.get("/readyz")
                assert response.status_code == 200, step
        assert server.count("/keys") >= 6
        assert validator.cache.misses == 0  # nothing was validated


def fetched_at(validator: TokenValidator, clock: FakeClock) -> float:
    age = validator.status()[0].age
    assert age is not None
    return clock.now - age


@pytest.mark.parametrize(("jitter", "ahead"), [(0.0, 300.0), (0.999, 150.15)])
async def test_refresh_time_is_jittered_within_the_last_part_of_the_lifetime(
    issuer: LocalIssuer, clock: FakeClock, jitter: float, ahead: float
) -> None:
    async with warmed(issuer, clock, jitter=lambda: jitter) as (validator, server):
        clock.advance(TTL - ahead - 1)
        await quiet()
        assert server.count("/keys") == 1  # not yet
        clock.advance(1)
        await refreshed(validator)
        assert server.count("/keys") == 2


async def test_failed_background_refresh_retries_after_the_backoff_then_recovers(
    issuer: LocalIssuer, clock: FakeClock
) -> None:
    async with warmed(issuer, clock) as (validator, server):
        server.override = lambda request: httpx.Response(503)
        clock.advance(REFRESH_AFTER)
        await until(
            lambda: (validator.status()[0].last_error or "").endswith(
                "HTTP status 503 (Service Unavailable)"
            )
        )
        attempts = len(server.requests)
        for _ in range(3):
            await quiet()  # the failure is recorded (and the retry timed) before time moves
            clock.advance(BACKOFF)
            await until(lambda n=attempts: len(server.requests) > n)  # type: ignore[misc]
            attempts = len(server.requests)
        await quiet()
        assert validator.status()[0].usable  # still within the lifetime
        server.override = None
        clock.advance(BACKOFF)
        await refreshed(validator)
        status = validator.status()[0]
        assert status.last_error is None and not status.stale


async def test_zero_backoff_does_not_retry_in_a_tight_loop(
    issuer: LocalIssuer, clock: FakeClock
) -> None:
    validator, server = make(issuer, clock, error_backoff=0.0)
    server.override = lambda request: httpx.Response(500)
    with pytest.raises(KeysUnavailable):
        await validator.warm_up()
    await quiet()
    attempts = len(server.requests)
    assert attempts == 1  # discovery failed; the timer waits for the retry floor
    clock.advance(MIN_RETRY_DELAY)
    await until(lambda: len(server.requests) == attempts + 1)
    await quiet()
    assert len(server.requests) == attempts + 1
    await validator.aclose()


async def test_first_validation_starts_the_refresher_without_a_lifespan(
    issuer: LocalIssuer, clock: FakeClock
) -> None:
    validator, server = make(issuer, clock)
    assert await validator.validate(
        issuer.mint(VAULT, roles=["Secrets.Read"])
    )  # no warm-up, no lifespan
    for cycle in range(2, 5):
        clock.advance(REFRESH_AFTER)
        await refreshed(validator)
        assert server.count("/keys") == cycle
    await validator.aclose()


async def test_aclose_stops_the_refresher_and_validating_starts_it_again(
    issuer: LocalIssuer, clock: FakeClock
) -> None:
    async with warmed(issuer, clock) as (validator, server):
        await validator.aclose()
        clock.advance(REFRESH_AFTER * 3)
        await quiet()
        assert server.count("/keys") == 1  # nothing ran after aclose
        token = issuer.mint(VAULT, roles=["Secrets.Read"])
        assert await validator.validate(token)  # keys are stale-but-usable: refresh starts
        await refreshed(validator)
        assert server.count("/keys") == 2
        clock.advance(REFRESH_AFTER)
        await refreshed(validator)
        assert server.count("/keys") == 3


async def test_aclose_stops_a_fetch_in_flight(issuer: LocalIssuer, clock: FakeClock) -> None:
    validator, server = make(issuer, clock)
    await validator.warm_up()
    started = anyio.Event()

    async def hang(request: httpx.Request) -> httpx.Response:
        started.set()
        await anyio.sleep_forever()
        raise AssertionError("unreachable")

    server.override = hang
    clock.advance(REFRESH_AFTER)
    await started.wait()
    with anyio.fail_after(10):  # a bound on a broken test, not a timing
        await validator.aclose()
    server.override = None
    clock.advance(REFRESH_AFTER)
    await quiet()
    assert server.count("/keys") == 2  # the cancelled fetch armed no timer


# -- single flight under both runtimes --------------------------------------------------


async def test_concurrent_misses_share_one_fetch(issuer: LocalIssuer, clock: FakeClock) -> None:
    validator, server = make(issuer, clock)
    tokens = [issuer.mint(VAULT, roles=["Secrets.Read"]) for _ in range(5)]
    kinds: list[str] = []

    async def check(token: str) -> None:
        kinds.append((await validator.validate(token)).kind)

    async with anyio.create_task_group() as group:
        for i in range(100):
            group.start_soon(check, tokens[i % 5])
    assert kinds == ["managed_identity"] * 100
    assert server.count("openid-configuration") == 1
    assert server.count("/keys") == 1
    await validator.aclose()


async def test_cancelled_request_does_not_cancel_the_fetch_others_wait_on(
    issuer: LocalIssuer, clock: FakeClock
) -> None:
    validator, server = make(issuer, clock)
    release = anyio.Event()

    async def slow(request: httpx.Request) -> httpx.Response:
        await release.wait()
        return issuer.handler(request)

    server.override = slow
    results: list[str] = []
    first = anyio.CancelScope()

    async def check() -> None:
        results.append((await validator.validate(issuer.mint(VAULT, roles=["Secrets.Read"]))).kind)

    async def cancellable() -> None:
        with first:
            await check()

    async with anyio.create_task_group() as group:
        group.start_soon(cancellable)
        group.start_soon(check)
        await until(lambda: len(server.requests) == 1)
        first.cancel()
        await quiet()
        release.set()
    assert results == ["managed_identity"]  # the first was cancelled, the second served
    assert server.count("openid-configuration") == 1
    assert server.count("/keys") == 1
    await validator.aclose()


# -- warm-up of several issuers ---------------------------------------------------------


async def test_warm_up_loads_every_issuer_and_names_each_failing_one(clock: FakeClock) -> None:
    bad_first, good, bad_last = (LocalIssuer(key_type="EC", clock=clock) for _ in range(3))
    by_tenant = {i.tenant_id: i for i in (bad_first, good, bad_last)}
    down = {bad_first.tenant_id, bad_last.tenant_id}
    hits: list[str] = []

    def route(request: httpx.Request) -> httpx.Response:
        hits.append(request.url.path)
        tenant = request.url.path.split("/")[1]
        if tenant in down:
            return httpx.Response(500)
        return by_tenant[tenant].handler(request)

    validator = TokenValidator(
        [i.issuer_config(VAULT, error_backoff=BACKOFF) for i in (bad_first, good, bad_last)],
        http_client=httpx.AsyncClient(transport=httpx.MockTransport(route)),
        **clock.validator_clocks(),
    )
    with pytest.raises(KeysUnavailable) as info:
        await validator.warm_up()
    message = str(info.value)
    assert bad_first.issuer in message and bad_last.issuer in message
    assert good.issuer not in message
    assert 1 <= info.value.retry_after <= BACKOFF
    assert [s.usable for s in validator.status()] == [False, True, False]
    assert await validator.validate(good.mint(VAULT, roles=["Secrets.Read"]))
    # The failing issuers are retried in the background.
    attempts = len(hits)
    clock.advance(BACKOFF)
    await until(lambda: len(hits) >= attempts + 2)
    await quiet()
    down.clear()
    clock.advance(BACKOFF)
    await until(lambda: all(s.usable for s in validator.status()))
    await validator.aclose()


# -- cached tokens are never better than their key set ----------------------------------


class DayToken(NamedTuple):
    validator: TokenValidator
    server: SwitchableIssuer
    observer: RecordingObserver
    token: str


@asynccontextmanager
async def day_token(issuer: LocalIssuer, clock: FakeClock) -> AsyncIterator[DayToken]:
    """:func:`warmed` with ``max_stale`` 600 s and an observer, and a token that lives a
    day: its cache entries outlast key sets, not the token."""
    observer = RecordingObserver()
    async with warmed(issuer, clock, max_stale=600.0, observer=observer) as (validator, server):
        token = issuer.mint(VAULT, roles=["Secrets.Read"], lifetime=86_400)
        yield DayToken(validator, server, observer, token)


async def test_cached_token_gets_503_once_its_key_set_is_too_old_then_recovers(
    issuer: LocalIssuer, clock: FakeClock
) -> None:
    async with day_token(issuer, clock) as (validator, server, observer, token):
        assert await validator.validate(token)
        assert validator.cached(token) is not None
        server.override = lambda request: httpx.Response(503)  # the issuer goes down
        clock.advance(TTL + 500)  # stale, within max_stale: the cached token still passes
        assert validator.cached(token) is not None
        clock.advance(100)  # past the lifetime plus max_stale
        assert validator.cached(token) is None
        with pytest.raises(KeysUnavailable):
            await validator.validate(token)
        assert not validator.is_ready()
        await quiet()  # the background retry in flight fails before the issuer comes back
        # The issuer comes back: the background retry restores the keys without a request.
        server.override = None
        clock.advance(BACKOFF)
        await refreshed(validator)
        assert validator.is_ready()
        observer.validations.clear()
        assert await validator.validate(token)  # verified again, then cached again
        assert await validator.validate(token)
        assert [v[3] for v in observer.validations] == [False, True]


async def test_cached_token_past_its_cap_is_verified_again_while_keys_stay_fresh(
    issuer: LocalIssuer, clock: FakeClock
) -> None:
    async with day_token(issuer, clock) as (validator, _, observer, token):
        for _ in range(3):  # three lifetimes, refreshed in the background
            assert await validator.validate(token)
            clock.advance(REFRESH_AFTER)
            await refreshed(validator)
        assert await validator.validate(token)
        # One full verification per lifetime-plus-max_stale window, hits in between.
        cached = [v[3] for v in observer.validations]
        assert cached.count(False) == 2, cached


async def test_cached_token_of_a_retired_key_is_refused_after_the_next_refresh(
    issuer: LocalIssuer, clock: FakeClock
) -> None:
    async with warmed(issuer, clock) as (validator, _):
        old_kid = issuer.signing_kid
        token = issuer.mint(VAULT, roles=["Secrets.Read"])
        assert await validator.validate(token)
        issuer.rotate("EC")
        issuer.retire(old_kid)
        assert validator.cached(token) is not None  # until the keys are refreshed
        clock.advance(REFRESH_AFTER)
        await refreshed(validator)  # no request: the timer did it
        assert validator.cached(token) is None
        with pytest.raises(InvalidToken) as info:
            await validator.validate(token)
        assert info.value.reason == "unknown_key"
        assert await validator.validate(issuer.mint(VAULT, roles=["Secrets.Read"]))


# -- end to end: Starlette + middleware + httpx ---------------------------------------


async def test_protected_app_refreshes_without_traffic_under_either_runtime(
    issuer: LocalIssuer, clock: FakeClock
) -> None:
    validator, server = make(issuer, clock)
    app = guarded_app(validator, max_age=TTL)
    old_kid = issuer.signing_kid
    token = issuer.mint(VAULT, roles=["Secrets.Read"], lifetime=86_400)
    transport = httpx.ASGITransport(app=app)  # no lifespan: the first request starts it
    async with httpx.AsyncClient(transport=transport, base_url="http://app") as http:
        assert (await http.get("/")).status_code == 401
        assert (await http.get("/", headers=bearer(token))).status_code == 200
        assert (await http.get("/", headers=bearer(token))).status_code == 200
        for cycle in range(2, 5):
            clock.advance(REFRESH_AFTER)
            await refreshed(validator)
            assert server.count("/keys") == cycle
            assert (await http.get("/readyz")).status_code == 200
        issuer.rotate("EC")
        issuer.retire(old_kid)
        assert (await http.get("/", headers=bearer(token))).status_code == 200  # cached
        clock.advance(REFRESH_AFTER)
        await refreshed(validator)
        await assert_key_retired(http, token, issuer.mint(VAULT, roles=["Secrets.Read"]))
    fetches = server.count("/keys")
    await validator.aclose()
    clock.advance(REFRESH_AFTER)
    await quiet()
    assert server.count("/keys") == fetches  # stopped
