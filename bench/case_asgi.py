"""Case 6: the same route called in process (no sockets), bare and behind each guard."""

from __future__ import annotations

from collections.abc import Callable

from starlette.types import ASGIApp

from tokenguard import TokenValidator

from ._asgi import bearer, call
from ._context import Bench
from ._measure import Subject, best_rates, progress
from ._report import Row
from ._tokens import AUDIENCE
from .apps import (
    fastapi_app,
    fastapi_azure_auth_app,
    starlette_app,
    starlette_constant_auth_app,
)

__all__ = ["run"]


def route_subject(
    name: str, app: ASGIApp, tokens: list[str], setup: Callable[[], None] | None = None
) -> Subject:
    """Call ``app`` once per token; every answer must be 200."""
    requests = [bearer(t) for t in tokens]

    async def batch() -> None:
        for headers in requests:
            status = await call(app, headers)
            if status != 200:
                raise AssertionError(f"{name}: status {status}")

    return Subject(name, batch, len(tokens), setup=setup)


async def _check_fastapi_azure_auth(app: ASGIApp, bench: Bench) -> None:
    """fastapi-azure-auth must really validate: a forged token is refused."""
    if await call(app, bearer(bench.repeated)) != 200:
        raise AssertionError("fastapi-azure-auth refused a valid token")
    if await call(app, bearer(bench.rsa.forge(AUDIENCE))) != 401:
        raise AssertionError("fastapi-azure-auth accepted a forged token")


async def _subjects(bench: Bench, tokens: list[str]) -> tuple[list[Subject], list[TokenValidator]]:
    """The apps as subjects, in their interleaving order, and the validators that must
    never hit their cache (they see unique tokens)."""
    repeated = [bench.repeated] * len(tokens)
    tg_repeated = bench.validator()
    tg_unique = bench.validator()
    fa_repeated = bench.validator()
    fa_unique = bench.validator()
    for validator in (tg_repeated, tg_unique, fa_repeated, fa_unique):
        await validator.warm_up()
    faa = fastapi_azure_auth_app(
        tenant_id=bench.rsa.tenant_id, discovery_url=bench.rsa.discovery_url, audience=AUDIENCE
    )
    await _check_fastapi_azure_auth(faa, bench)
    subjects = [
        route_subject("starlette", starlette_app(), repeated),
        route_subject("starlette+tg", starlette_app(tg_repeated), repeated),
        route_subject("starlette+const", starlette_constant_auth_app(), repeated),
        route_subject(
            "starlette+tg unique", starlette_app(tg_unique), tokens, tg_unique.cache.clear
        ),
        route_subject("fastapi", fastapi_app(), repeated),
        route_subject("fastapi+tg", fastapi_app(fa_repeated), repeated),
        route_subject("fastapi+tg unique", fastapi_app(fa_unique), tokens, fa_unique.cache.clear),
        route_subject("fastapi+faa", faa, repeated),
    ]
    return subjects, [tg_unique, fa_unique]


async def run(bench: Bench) -> list[Row]:
    """Starlette bare and guarded; FastAPI bare, guarded and under fastapi-azure-auth."""
    settings = bench.settings
    tokens = bench.unique("RS256")
    subjects, unique = await _subjects(bench, tokens)
    progress(f"case 6: {len(subjects)} apps, {len(tokens)} requests each, {settings.rounds} rounds")
    rates = await best_rates(subjects, settings.rounds)
    if any(validator.cache.hits for validator in unique):
        raise AssertionError("unique tokens hit the cache: the case measures the wrong thing")
    return _starlette_rows(rates) + _fastapi_rows(rates) + _injection_rows(rates)


def _starlette_rows(rates: dict[str, float]) -> list[Row]:
    """6a-6c: the bare Starlette route (the reference) and behind TokenGuardMiddleware."""
    bare_rate = rates["starlette"]
    return [
        Row(
            "6a",
            "Starlette route, no auth (in process)",
            bare_rate,
            "req/s",
            notes="same requests (bearer header ignored)",
        ),
        Row(
            "6b",
            "Starlette + TokenGuardMiddleware, repeated token",
            rates["starlette+tg"],
            "req/s",
            "no auth",
            bare_rate,
        ),
        Row(
            "6c",
            "Starlette + TokenGuardMiddleware, unique tokens",
            rates["starlette+tg unique"],
            "req/s",
            "no auth",
            bare_rate,
        ),
    ]


def _fastapi_rows(rates: dict[str, float]) -> list[Row]:
    """6d-6g: FastAPI under fastapi-azure-auth (the reference), behind TokenGuardMiddleware,
    and bare against the bare Starlette route."""
    bare_rate, faa_rate = rates["starlette"], rates["fastapi+faa"]
    return [
        Row(
            "6d",
            "FastAPI route + fastapi-azure-auth (same token; it has no cache)",
            faa_rate,
            "req/s",
            notes="forged token checked: 401",
        ),
        Row(
            "6e",
            "FastAPI + TokenGuardMiddleware, repeated token",
            rates["fastapi+tg"],
            "req/s",
            "fastapi-azure-auth",
            faa_rate,
            ">=",
            3.0,
        ),
        Row(
            "6f",
            "FastAPI + TokenGuardMiddleware, unique tokens",
            rates["fastapi+tg unique"],
            "req/s",
            "fastapi-azure-auth",
            faa_rate,
        ),
        Row(
            "6g",
            "FastAPI route, no auth (in process)",
            rates["fastapi"],
            "req/s",
            "Starlette no auth",
            bare_rate,
        ),
    ]


def _injection_rows(rates: dict[str, float]) -> list[Row]:
    """6h-6i: what injecting a user costs at all (a constant one, no token work), and
    TokenGuardMiddleware against that."""
    bare_rate = rates["starlette"]
    return [
        Row(
            "6h",
            "Starlette's AuthenticationMiddleware, constant user (no token work at all)",
            rates["starlette+const"],
            "req/s",
            "no auth",
            bare_rate,
            notes="what any user-injecting middleware costs on this route",
        ),
        Row(
            "6i",
            "Starlette + TokenGuardMiddleware, repeated token (6b), against 6h",
            rates["starlette+tg"],
            "req/s",
            "AuthenticationMiddleware, constant user",
            rates["starlette+const"],
            ">=",
            0.97,
            notes="a verified caller costs what injecting a constant user costs",
        ),
    ]
