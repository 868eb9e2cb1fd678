"""Case 8: key fetches under load — a cold start, and a flood of unknown ``kid``s."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import dataclass

from starlette.types import ASGIApp

from tokenguard import TokenValidator

from ._asgi import bearer, call
from ._context import Bench, Settings
from ._http import Load, ServerProcess, get_request, run_load
from ._measure import progress
from ._report import Row
from ._tokens import AUDIENCE, unknown_kid_tokens
from .apps import starlette_app

__all__ = ["run"]


class SteppedClock:
    """``time.monotonic`` plus an offset the bench moves forward (one cooldown at a time)."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.monotonic() + self.offset


async def _call_in_batches(app: ASGIApp, tokens: list[str], size: int = 100) -> Counter[int]:
    """One request per token, ``size`` at a time concurrently (like a server's open
    connections); returns the count of each status."""
    statuses: Counter[int] = Counter()
    for start in range(0, len(tokens), size):
        batch = tokens[start : start + size]
        statuses.update(await asyncio.gather(*(call(app, bearer(t)) for t in batch)))
    return statuses


def _hits(bench: Bench) -> Counter[str]:
    return Counter(bench.rsa.hits)


async def _cold_start(bench: Bench) -> list[Row]:
    """N concurrent first requests against a validator that has no keys yet; the keys
    come over real HTTP from the loopback issuer, so the fetch takes real time."""
    tokens = bench.unique("RS256", bench.settings.cold_requests)
    validator = bench.track(TokenValidator([bench.rsa.issuer_config(AUDIENCE)]))
    app = starlette_app(validator)
    before = _hits(bench)
    started = time.perf_counter()
    statuses = Counter(await asyncio.gather(*(call(app, bearer(t)) for t in tokens)))
    seconds = time.perf_counter() - started
    fetched = _hits(bench) - before
    if statuses != Counter({200: len(tokens)}):
        raise AssertionError(f"cold start: statuses {dict(statuses)}")
    progress(f"case 8: cold start, {len(tokens)} requests: {dict(fetched)}")
    note = f"{len(tokens)} concurrent first requests, all 200, in {seconds * 1000:.0f} ms"
    return [
        Row(
            "8a",
            "Cold start: discovery fetches",
            fetched["discovery"],
            "fetches",
            "expected",
            1,
            "==",
            1.0,
            note,
        ),
        Row(
            "8b",
            "Cold start: JWKS fetches",
            fetched["jwks"],
            "fetches",
            "expected",
            1,
            "==",
            1.0,
            note,
        ),
    ]


async def _flood_counted(bench: Bench) -> Row:
    """The flood in process on an injected clock: exactly one refresh per cooldown window."""
    settings = bench.settings
    clock = SteppedClock()
    validator = bench.validator(monotonic=clock)
    await validator.warm_up()
    cooldown = validator.issuers[0].refresh_cooldown
    app = starlette_app(validator)
    flood = unknown_kid_tokens(bench.repeated, settings.flood_tokens)
    per_window = -(-len(flood) // settings.flood_windows)
    before = _hits(bench)
    statuses: Counter[int] = Counter()
    for start in range(0, len(flood), per_window):
        clock.offset += cooldown  # a new window: one refresh is allowed again
        chunk = flood[start : start + per_window]
        statuses.update(await _call_in_batches(app, chunk))
    fetched = _hits(bench) - before
    if statuses != Counter({401: len(flood)}) or fetched["discovery"]:
        raise AssertionError(f"flood: statuses {dict(statuses)}, fetches {dict(fetched)}")
    progress(f"case 8: in-process flood over {settings.flood_windows} windows: {dict(fetched)}")
    return Row(
        "8c",
        f"Flood of {len(flood)} unknown kids over {settings.flood_windows} cooldown windows "
        "(in process, stepped clock): JWKS fetches",
        fetched["jwks"],
        "fetches",
        "windows",
        settings.flood_windows,
        "<=",
        1.0,
        "all 401; no discovery refetch",
        {"windows": settings.flood_windows, "jwks": fetched["jwks"]},
    )


async def _flood_over_http(bench: Bench) -> list[Row]:
    """Unknown kids sent to the uvicorn server at a steady rate on one connection while
    valid requests arrive at a steady rate on another; the valid requests' p99 is
    compared with the same valid traffic alone. Both are paced (not full speed) so the
    figure shows what the flood does to others, not plain CPU saturation."""
    settings = bench.settings
    server = await bench.http_server("tokenguard")
    valid = [get_request(bench.repeated)]
    flood = [get_request(t) for t in unknown_kid_tokens(bench.repeated, settings.flood_tokens)]
    share = -(-len(flood) // settings.flood_rounds)
    during: list[Load] = []
    alone: list[Load] = []
    fetches = allowed = 0
    for start in range(0, len(flood), share):
        outcome = await _flood_round(bench, server, valid, flood[start : start + share])
        during.append(outcome.served)
        alone.append(outcome.baseline)
        fetches += outcome.fetches
        allowed += outcome.allowed
    # One p99 over all rounds on each side (~2 000 valid requests each): the whole
    # flood, as the target reads, and a steadier figure than any round's 400.
    return _flood_rows(settings, len(flood), fetches, allowed, _pooled(during), _pooled(alone))


@dataclass
class _FloodRound:
    """One round of the HTTP flood."""

    served: Load  # the valid traffic during the flood
    baseline: Load  # the same valid traffic alone, right after
    fetches: int  # JWKS fetches the flood caused
    allowed: int  # fetches the cooldown allows in the flood's elapsed time


async def _flood_round(
    bench: Bench, server: ServerProcess, valid: list[bytes], chunk: list[bytes]
) -> _FloodRound:
    """``chunk`` of the flood with valid requests alongside, then the valid ones alone."""
    settings = bench.settings
    before = _hits(bench)
    done = asyncio.Event()

    async def attack() -> Load:
        try:
            return await run_load(
                server.port,
                chunk,
                total=len(chunk),
                connections=1,
                max_seconds=120,
                rate=settings.flood_rate,
                server_pid=server.pid,
            )
        finally:
            done.set()

    attacked, served = await asyncio.gather(
        attack(),
        run_load(
            server.port,
            valid,
            total=10**9,
            connections=1,
            max_seconds=120,
            rate=settings.valid_rate,
            stop=done,
        ),
    )
    fetches = (_hits(bench) - before)["jwks"]
    allowed = int(attacked.seconds // settings.flood_cooldown) + 1
    if attacked.statuses.keys() != {401} or served.statuses.keys() != {200}:
        raise AssertionError(f"flood: {dict(attacked.statuses)} / {dict(served.statuses)}")
    baseline = await run_load(
        server.port,
        valid,
        total=served.count,
        connections=1,
        max_seconds=120,
        rate=settings.valid_rate,
    )
    progress(
        f"case 8: HTTP flood round: valid p99 {served.ms(0.99):.2f} ms during, "
        f"{baseline.ms(0.99):.2f} ms alone; flood {attacked.rate:,.0f} req/s, "
        f"server CPU {attacked.server_cpu:.2f}"
    )
    return _FloodRound(served, baseline, fetches, allowed)


def _flood_rows(
    settings: Settings,
    flood_size: int,
    fetches: int,
    allowed: int,
    pooled_during: Load,
    pooled_alone: Load,
) -> list[Row]:
    """8d-8e: the HTTP flood's JWKS fetches and the valid requests' p99 during it."""
    return [
        Row(
            "8d",
            f"Flood of {flood_size} unknown kids over HTTP (cooldown "
            f"{settings.flood_cooldown:g} s): JWKS fetches",
            fetches,
            "fetches",
            "1 per elapsed window",
            allowed,
            "<=",
            1.0,
        ),
        Row(
            "8e",
            "Valid requests' p99 during the HTTP flood",
            pooled_during.ms(0.99),
            "ms",
            "p99 without flood",
            pooled_alone.ms(0.99),
            "<=",
            2.0,
            f"flood {settings.flood_rate:g}/s + valid {settings.valid_rate:g}/s, paced, one "
            f"connection each; {pooled_during.count} vs {pooled_alone.count} requests; "
            f"p50 {pooled_during.ms(0.5):.2f} vs {pooled_alone.ms(0.5):.2f} ms",
            {"p50_ms": pooled_during.ms(0.5), "p50_alone_ms": pooled_alone.ms(0.5)},
        ),
    ]


def _pooled(loads: list[Load]) -> Load:
    """The latencies of several runs as one."""
    return Load(
        seconds=sum(load.seconds for load in loads),
        latencies=[latency for load in loads for latency in load.latencies],
    )


async def run(bench: Bench) -> list[Row]:
    """Cold start, the counted flood, then the flood over HTTP."""
    rows = await _cold_start(bench)
    rows.append(await _flood_counted(bench))
    rows += await _flood_over_http(bench)
    return rows
