"""Detached background jobs under asyncio and trio; a validator that outlives its loop."""

from __future__ import annotations

import logging
import time

import anyio
import pytest

from tokenguard import TokenValidator
from tokenguard._background import Job, spawn
from tokenguard._keyset import KeySet
from tokenguard.testing import LocalIssuer

from .conftest import VAULT
from .helpers import FakeClock, SwitchableIssuer


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.mark.anyio
async def test_a_job_outlives_its_caller_and_stops_when_cancelled() -> None:
    started, stopped = anyio.Event(), anyio.Event()

    async def forever() -> None:
        started.set()
        try:
            await anyio.sleep_forever()
        finally:
            stopped.set()

    async def caller() -> Job:
        return spawn(forever, name="test job")

    with anyio.CancelScope() as scope:
        job = await caller()
        scope.cancel()  # the caller's cancellation is not the job's
    await started.wait()
    assert (job.alive, stopped.is_set()) == (True, False)
    job.cancel()
    await job.wait()
    assert (job.alive, stopped.is_set()) == (False, True)
    job.cancel()  # harmless once ended


@pytest.mark.anyio
async def test_a_job_cancelled_before_it_ran_ends() -> None:
    ran: list[bool] = []

    async def work() -> None:
        await anyio.sleep(0)
        ran.append(True)

    job = spawn(work, name="test job")
    job.cancel()
    await job.wait()
    assert ran == []


@pytest.mark.anyio
async def test_a_failing_job_is_logged_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    async def boom() -> None:
        raise RuntimeError("bug")

    with caplog.at_level(logging.ERROR, logger="tokenguard"):
        job = spawn(boom, name="test job")
        await job.wait()
    assert any(r.getMessage() == "tokenguard background task failed" for r in caplog.records)


@pytest.mark.parametrize(("first", "second"), [("asyncio", "asyncio"), ("trio", "asyncio")])
def test_a_validator_outlives_its_event_loop(first: str, second: str) -> None:
    """Starlette's TestClient without ``with`` runs each request on a new loop: the
    refresh timer of an ended loop is forgotten, and the next loop starts its own."""
    issuer = LocalIssuer(key_type="EC")
    server = SwitchableIssuer(issuer)
    clock = FakeClock(time.monotonic())
    validator = TokenValidator(
        [issuer.issuer_config(VAULT)], http_client=server.client(), monotonic=clock
    )

    async def validate() -> None:
        assert (
            await validator.validate(issuer.mint(VAULT, roles=["Secrets.Read"]))
        ).kind == "managed_identity"

    anyio.run(validate, backend=first)  # loads keys, arms a timer, then the loop ends
    keys = validator._states[0].keys
    assert isinstance(keys, KeySet)
    assert keys._timer is not None
    clock.advance(3_600)  # due: the next loop's first request starts a refresh

    def timer_alive() -> bool | None:
        return None if keys._timer is None else keys._timer.alive

    async def validate_and_close() -> None:
        assert timer_alive() is False  # the timer of the ended loop
        await validate()
        with anyio.fail_after(10):  # a bound on a broken test, not a timing
            while server.count("/keys") < 2:
                await anyio.sleep(0.001)
        assert timer_alive() is True
        await validator.aclose()

    anyio.run(validate_and_close, backend=second)
    assert server.count("/keys") == 2
