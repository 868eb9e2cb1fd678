"""Small test doubles shared by the core tests."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping
from typing import Any, Literal

import anyio
import httpx
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from tokenguard import TokenGuardMiddleware, TokenValidator, get_identity
from tokenguard.readiness import readiness_endpoint
from tokenguard.testing import LocalIssuer


class FakeClock:
    """A monotonic clock that moves only when told; :meth:`sleep` waits on it.

    Pass ``sleep=clock.sleep`` to a validator and its background refresh timer runs on
    this clock: :meth:`advance` wakes the sleepers whose time has come (under asyncio
    or trio). Setting ``now`` directly moves the clock without waking anyone.
    """

    def __init__(self, start: float = 1_000.0) -> None:
        self.now = start
        self._sleepers: list[tuple[float, anyio.Event]] = []

    def __call__(self) -> float:
        return self.now

    def validator_clocks(self) -> dict[str, Any]:
        """A validator's options that put its wall clock, its monotonic clock and its
        refresh timer's sleeps all on this clock."""
        return {"clock": self, "monotonic": self, "sleep": self.sleep}

    def advance(self, seconds: float) -> None:
        self.now += seconds
        due = [event for deadline, event in self._sleepers if deadline <= self.now]
        self._sleepers = [(d, e) for d, e in self._sleepers if d > self.now]
        for event in due:
            event.set()

    async def sleep(self, seconds: float) -> None:
        deadline = self.now + seconds
        while self.now < deadline:
            event = anyio.Event()
            self._sleepers.append((deadline, event))
            await event.wait()


Handler = Callable[[httpx.Request], httpx.Response | Awaitable[httpx.Response]]


class SwitchableIssuer:
    """Serves a LocalIssuer through a mock transport whose behaviour tests can switch.

    ``override`` (when set) answers instead of the issuer; every request is recorded.
    """

    def __init__(self, issuer: LocalIssuer) -> None:
        self.issuer = issuer
        self.override: Handler | None = None
        self.requests: list[httpx.Request] = []

    async def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if self.override is not None:
            result = self.override(request)
            if isinstance(result, httpx.Response):
                return result
            return await result
        return self.issuer.handler(request)

    def client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(transport=httpx.MockTransport(self.handle))

    def validator(
        self, audience: str, issuer_options: Mapping[str, Any], **options: Any
    ) -> TokenValidator:
        """A validator trusting the issuer for ``audience`` (``issuer_options`` to its
        ``Issuer``, ``options`` to the validator) that fetches its keys from here."""
        config = self.issuer.issuer_config(audience, **issuer_options)
        return TokenValidator([config], http_client=self.client(), **options)

    def count(self, suffix: str) -> int:
        return sum(1 for r in self.requests if r.url.path.endswith(suffix))


@contextlib.contextmanager
def serve(app: Any, *, lifespan: Literal["on", "off"] = "off") -> Iterator[str]:
    """Serve an ASGI app with uvicorn on a free 127.0.0.1 port in a thread; yield its URL.

    ``lifespan="on"`` runs the app's startup (and the middleware's key warm-up) before
    the URL is yielded, and its shutdown before the thread ends.
    """
    # IPPROTO_TCP so asyncio sets TCP_NODELAY on accepted connections (no 40 ms stalls).
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, log_level="warning", lifespan=lifespan)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline:  # pragma: no cover - a broken machine
            raise RuntimeError("server did not start")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


def closing_spy(validator: TokenValidator, monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """Records each ``validator.aclose()`` (which still runs)."""
    closed: list[bool] = []
    original = validator.aclose

    async def aclose() -> None:
        closed.append(True)
        await original()

    monkeypatch.setattr(validator, "aclose", aclose)
    return closed


def bearer(token: str) -> dict[str, str]:
    """The ``Authorization`` header that carries ``token``."""
    return {"Authorization": f"Bearer {token}"}


class RecordingObserver:
    """A ``ValidationObserver`` that records what it is told."""

    def __init__(self) -> None:
        #: (outcome, reason, issuer, cached) per validation.
        self.validations: list[tuple[str, str | None, str | None, bool]] = []
        #: (issuer, document, outcome) per key fetch.
        self.fetches: list[tuple[str, str, str]] = []

    def validation(
        self, outcome: str, reason: str | None, issuer: str | None, seconds: float, cached: bool
    ) -> None:
        assert seconds >= 0
        self.validations.append((outcome, reason, issuer, cached))

    def key_fetch(self, issuer: str, document: str, outcome: str) -> None:
        self.fetches.append((issuer, document, outcome))


async def whoami(request: Request) -> JSONResponse:
    """The endpoint behind the middleware: the caller's identity kind and issuer."""
    identity = get_identity(request)
    assert identity is not None
    return JSONResponse({"kind": identity.kind, "issuer": identity.issuer})


def guarded_app(validator: TokenValidator, *, max_age: float | None = None) -> Starlette:
    """:func:`whoami` at ``/`` behind the middleware, and ``/readyz`` (``max_age`` passed
    to the readiness endpoint) left open."""
    return Starlette(
        routes=[
            Route("/", whoami),
            Route("/readyz", readiness_endpoint(validator, max_age=max_age)),
        ],
        middleware=[
            Middleware(TokenGuardMiddleware, validator=validator, exclude_paths=["/readyz"])
        ],
    )


async def until(condition: Callable[[], bool]) -> None:
    """Let the background work run until ``condition`` holds (bounded: a broken test
    fails, not hangs; never a timing)."""
    for _ in range(20_000):
        if condition():
            return
        await anyio.sleep(0.0005)
    raise AssertionError("condition never became true")


async def assert_key_retired(
    http: httpx.AsyncClient, token: str, fresh: str, *, times: int = 1
) -> None:
    """After a refresh dropped the key that signed ``token``: ``token`` gets 401 "signing
    key is unknown" (``times`` times: cached or not), and ``fresh`` (current key) gets 200."""
    for _ in range(times):
        response = await http.get("/", headers=bearer(token))
        assert response.status_code == 401
        assert "signing key is unknown" in response.headers["www-authenticate"]
    assert (await http.get("/", headers=bearer(fresh))).status_code == 200


def validator_of(audience: str, *issuers: LocalIssuer) -> TokenValidator:
    """One validator for ``audience`` trusting every issuer; each one's metadata comes
    from its own handler (their URLs differ by tenant id)."""

    def handler(request: httpx.Request) -> httpx.Response:
        owner = next(i for i in issuers if i.tenant_id in request.url.path)
        return owner.handler(request)

    return TokenValidator(
        [i.issuer_config(audience) for i in issuers],
        http_client=httpx.AsyncClient(transport=httpx.MockTransport(handler)),
    )
