"""Operating a validator: warm keys at startup (which starts their background refresh),
stop and close at shutdown, answer ``/readyz``.

    validator = TokenValidator([issuer])
    app = Starlette(
        routes=[Route("/readyz", readiness_endpoint(validator))],
        lifespan=lifespan(validator),
    )

:class:`~tokenguard.TokenGuardMiddleware` already warms and closes its validator
through the ASGI lifespan; :func:`lifespan` is for apps that validate without it
(FastAPI dependencies, background workers). Readiness is "every issuer has usable
keys": fetched and not older than their cache lifetime plus the issuer's
``max_stale``, and, when ``max_age`` is given, fetched (or confirmed unchanged, a 304)
within ``max_age`` seconds. Keys refresh in the background shortly before their
lifetime ends, so on a healthy issuer the age stays below that lifetime: pick a
``max_age`` above it (Entra's keys live 24 h).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any, Final

from starlette.requests import Request
from starlette.responses import JSONResponse

from ._errors import KeysUnavailable
from ._keyset import KeySetStatus
from ._validator import TokenValidator

__all__ = [
    "STATE_KEY",
    "lifespan",
    "managed_validator",
    "readiness_endpoint",
    "readiness_report",
]

logger = logging.getLogger("tokenguard")

#: ``app.state`` attribute holding the validator (set by :func:`lifespan`).
STATE_KEY: Final = "tokenguard_validator"


async def warm_up_at_startup(validator: TokenValidator, *, strict: bool = False) -> None:
    """Load the validator's keys for an app that is starting (shared by every lifespan
    path): a failure is logged with its reason and the app starts anyway, unless
    ``strict``, which also logs, closes the validator and raises :class:`KeysUnavailable`."""
    try:
        await validator.warm_up()
    except KeysUnavailable as exc:
        # The reason (document, URL, cause) in the text: plain handlers show only that.
        if strict:
            logger.error("keys could not be loaded at startup; failing the startup: %s", exc)
            await validator.aclose()
            raise
        # Requests get 503 until keys arrive; readiness says so.
        logger.warning(
            "keys could not be loaded at startup; answering 503 until they arrive: %s", exc
        )


@asynccontextmanager
async def managed_validator(
    validator: TokenValidator, *, warm_up: bool = True, strict: bool = False, close: bool = True
) -> AsyncIterator[TokenValidator]:
    """Load every issuer's keys on entry (starting their background refresh) and close
    the validator on exit (stopping it).

    A failed warm-up is logged and the app starts anyway (requests get 503 until keys
    arrive, and readiness says so); ``strict=True`` raises :class:`KeysUnavailable`
    instead, failing the startup.
    """
    if warm_up:
        await warm_up_at_startup(validator, strict=strict)
    try:
        yield validator
    finally:
        if close:
            await validator.aclose()


def lifespan(
    validator: TokenValidator, *, warm_up: bool = True, strict: bool = False, close: bool = True
) -> Callable[[Any], AbstractAsyncContextManager[None]]:
    """A Starlette/FastAPI ``lifespan=`` factory around :func:`managed_validator`.

    It also sets ``app.state.tokenguard_validator`` (unless already set), where
    :func:`readiness_endpoint` and ``tokenguard.fastapi.TokenGuard`` look when they
    were given no validator.
    """

    @asynccontextmanager
    async def run(app: Any) -> AsyncIterator[None]:
        state = getattr(app, "state", None)
        if state is not None and getattr(state, STATE_KEY, None) is None:
            setattr(state, STATE_KEY, validator)
        async with managed_validator(validator, warm_up=warm_up, strict=strict, close=close):
            yield

    return run


def _issuer_report(status: KeySetStatus, ready: bool, include_errors: bool) -> dict[str, Any]:
    report: dict[str, Any] = {
        "issuer": status.issuer,
        "ready": ready,
        "loaded": status.loaded,
        "usable": status.usable,
        "stale": status.stale,
        "key_count": status.key_count,
        "age_seconds": None if status.age is None else round(status.age, 3),
    }
    if include_errors:
        report["last_error"] = status.last_error
    return report


def readiness_report(
    validator: TokenValidator, *, max_age: float | None = None, include_errors: bool = False
) -> dict[str, Any]:
    """``{"ready": bool, "issuers": [...]}``: per issuer whether its keys are usable.

    ``max_age`` additionally requires keys fetched within that many seconds (a 304
    counts: the keys were confirmed); ``age_seconds`` is the time since.
    ``include_errors`` adds the last fetch error text (it names hosts and documents,
    so leave it off when ``/readyz`` is reachable from outside).
    """
    issuers = []
    for status in validator.status():
        ready = status.usable and (
            max_age is None or (status.age is not None and status.age <= max_age)
        )
        issuers.append(_issuer_report(status, ready, include_errors))
    return {"ready": all(i["ready"] for i in issuers), "issuers": issuers}


def readiness_endpoint(
    validator: TokenValidator | None = None,
    *,
    max_age: float | None = None,
    include_errors: bool = False,
) -> Callable[[Request], Awaitable[JSONResponse]]:
    """A ``/readyz`` endpoint: 200 when :func:`readiness_report` is ready, else 503.

    Works as a Starlette ``Route`` endpoint and as a FastAPI route
    (``app.add_api_route("/readyz", readiness_endpoint(v), include_in_schema=False)``).
    Without ``validator`` it uses ``app.state.tokenguard_validator``. Exclude the path
    from the middleware so probes need no token.
    """

    async def readyz(request: Request) -> JSONResponse:
        found = validator or getattr(request.app.state, STATE_KEY, None)
        if not isinstance(found, TokenValidator):
            raise RuntimeError("no validator: pass one, or set app.state.tokenguard_validator")
        report = readiness_report(found, max_age=max_age, include_errors=include_errors)
        status = 200 if report["ready"] else 503
        return JSONResponse(report, status_code=status, headers={"Cache-Control": "no-store"})

    return readyz
