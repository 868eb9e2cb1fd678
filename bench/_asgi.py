"""Calling ASGI apps without sockets, and serving one on loopback inside the running loop."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import uvicorn
from starlette.types import ASGIApp, Message

from ._running import Running

__all__ = ["LoopbackServer", "bearer", "call", "loopback_socket"]

_REQUEST: Message = {"type": "http.request", "body": b"", "more_body": False}


def bearer(token: str) -> list[tuple[bytes, bytes]]:
    """ASGI request headers carrying ``token`` as a bearer credential."""
    return [(b"host", b"bench"), (b"authorization", b"Bearer " + token.encode("ascii"))]


async def call(app: ASGIApp, headers: list[tuple[bytes, bytes]], path: str = "/data") -> int:
    """One GET through ``app``; returns the response status.

    Deliberately minimal (no httpx, no TestClient): their per-request overhead would
    drown the difference between the apps being compared.
    """
    status = 0

    async def receive() -> Message:
        return _REQUEST

    async def send(message: Message) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]

    scope: dict[str, Any] = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": headers,
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 80),
    }
    await app(scope, receive, send)
    return status


def loopback_socket() -> socket.socket:
    """A listening TCP socket on 127.0.0.1 with a free port chosen by the kernel."""
    # IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY on accepted connections only when
    # the listening socket says it is TCP (else Nagle adds ~40 ms to some answers).
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(1024)
    return sock


class LoopbackServer(Running):
    """Serve an ASGI app with uvicorn on ``sock`` as a task of the running event loop."""

    def __init__(self, app: ASGIApp, sock: socket.socket) -> None:
        self.sock = sock
        self.port: int = sock.getsockname()[1]
        config = uvicorn.Config(app, lifespan="off", access_log=False, log_level="warning")
        self._server = uvicorn.Server(config)
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._server.serve(sockets=[self.sock]))
        while not self._server.started:
            if self._task.done():
                await self._task  # surfaces the startup error
                raise RuntimeError("loopback server stopped during startup")
            await asyncio.sleep(0.01)

    async def stop(self) -> None:
        self._server.should_exit = True
        if self._task is not None:
            await self._task
        self.sock.close()
