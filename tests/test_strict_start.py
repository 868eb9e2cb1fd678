"""A strict start on every lifespan path: keys that cannot be loaded fail the startup.

The middleware (``strict_start=True``), FastAPI's ``TokenGuard(strict_start=True)``
and ``readiness.lifespan(strict=True)``: under Starlette's TestClient the ``with``
block raises; under uvicorn (default ``lifespan="auto"``) the server never starts.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.responses import PlainTextResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from tokenguard import KeysUnavailable, TokenGuardMiddleware, TokenValidator
from tokenguard.fastapi import TokenGuard
from tokenguard.readiness import lifespan
from tokenguard.testing import LocalIssuer

from .helpers import closing_spy, serve

VAULT = "https://vault.azure.net"


def closed_port() -> int:
    """A 127.0.0.1 port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def unreachable(issuer: LocalIssuer) -> tuple[TokenValidator, str]:
    """A validator whose JWKS URL refuses connections (a real socket), and that URL."""
    url = f"http://127.0.0.1:{closed_port()}/keys"
    config = issuer.issuer_config(VAULT, discovery_url=None, jwks_uri=url)
    return TokenValidator([config]), url


def middleware_app(validator: TokenValidator, started: list[bool]) -> Starlette:
    @contextlib.asynccontextmanager
    async def own(app: Starlette) -> AsyncIterator[None]:
        started.append(True)
        yield

    return Starlette(
        routes=[Route("/", lambda r: PlainTextResponse("ok"))],
        middleware=[Middleware(TokenGuardMiddleware, validator=validator, strict_start=True)],
        lifespan=own,
    )


def guard_app(validator: TokenValidator, started: list[bool]) -> FastAPI:
    guard = TokenGuard(validator, strict_start=True)

    @contextlib.asynccontextmanager
    async def own(app: FastAPI) -> AsyncIterator[None]:
        async with guard.lifespan(app):
            started.append(True)
            yield

    return FastAPI(lifespan=own)


def readiness_app(validator: TokenValidator, started: list[bool]) -> Starlette:
    run = lifespan(validator, strict=True)

    @contextlib.asynccontextmanager
    async def own(app: Starlette) -> AsyncIterator[None]:
        async with run(app):
            started.append(True)
            yield

    return Starlette(lifespan=own)


AppFactory = Callable[[TokenValidator, list[bool]], Any]
PATHS: list[AppFactory] = [middleware_app, guard_app, readiness_app]
IDS = ["middleware", "fastapi-guard", "readiness-lifespan"]


@pytest.mark.parametrize("build", PATHS, ids=IDS)
def test_testclient_startup_raises_and_the_app_never_starts(
    build: AppFactory, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    validator, url = unreachable(LocalIssuer())
    closed = closing_spy(validator, monkeypatch)
    started: list[bool] = []
    with (
        caplog.at_level(logging.ERROR, logger="tokenguard"),
        pytest.raises(KeysUnavailable, match=f"JWKS {url}: connection refused"),
        TestClient(build(validator, started)),
    ):
        pytest.fail("the app started")  # pragma: no cover
    assert started == []
    assert closed == [True]
    assert any(
        m.startswith("keys could not be loaded at startup; failing the startup: ") and url in m
        for m in caplog.messages
    )


@pytest.mark.parametrize("build", PATHS, ids=IDS)
def test_uvicorn_does_not_start(build: AppFactory, caplog: pytest.LogCaptureFixture) -> None:
    validator, url = unreachable(LocalIssuer())
    started: list[bool] = []
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    # log_config=None: uvicorn's records reach caplog; lifespan "auto" is the default,
    # where an app that merely raised would be taken for one without lifespan support.
    config = uvicorn.Config(build(validator, started), log_config=None, lifespan="auto")
    server = uvicorn.Server(config)
    exits: list[object] = []

    def run() -> None:
        try:
            server.run(sockets=[sock])
        except SystemExit as exc:  # uvicorn's "startup failed" exit
            exits.append(exc.code)

    thread = threading.Thread(target=run, daemon=True)
    with caplog.at_level(logging.INFO):
        thread.start()
        thread.join(timeout=20)
    sock.close()
    assert not thread.is_alive(), "uvicorn kept running"
    assert not server.started
    assert exits == [3]  # uvicorn's exit code for a failed startup
    assert started == []
    assert "Application startup failed. Exiting." in caplog.messages
    assert not any("appears unsupported" in m for m in caplog.messages)
    assert any(url in m and "connection refused" in m for m in caplog.messages)
    if build is middleware_app:  # its own lifespan.startup.failed message, logged by uvicorn
        assert any(
            r.name == "uvicorn.error"
            and r.getMessage().startswith("tokenguard: keys could not be loaded at startup: ")
            and url in r.getMessage()
            for r in caplog.records
        )


def test_uvicorn_strict_start_with_a_healthy_issuer_serves() -> None:
    issuer = LocalIssuer()
    with serve(issuer.asgi_app()) as issuer_url:
        issuer.base_url = issuer_url
        validator = TokenValidator([issuer.issuer_config(VAULT)])
        started: list[bool] = []
        with serve(middleware_app(validator, started), lifespan="on") as url:
            assert started == [True]
            assert validator.is_ready()
            assert httpx.get(f"{url}/").status_code == 401  # up, and guarding


def test_strict_start_needs_warm_up() -> None:
    validator = LocalIssuer().validator([VAULT])
    with pytest.raises(ValueError, match="strict_start=True needs warm_up=True"):
        TokenGuardMiddleware(
            PlainTextResponse("x"), validator=validator, strict_start=True, warm_up=False
        )
