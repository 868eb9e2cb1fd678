"""Several uvicorn servers in one asyncio loop, on sockets the lab binds itself.

Binding first (port 0 for "any free port") means a busy port is reported before anything
starts, and tests learn their ports without a race. The lab, not uvicorn, handles
SIGINT/SIGTERM, once for all servers.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import uvicorn
from starlette.types import ASGIApp

__all__ = ["LabError", "RunningServer", "bind", "start_server"]

HOST = "127.0.0.1"


class LabError(RuntimeError):
    """The lab could not start (busy port, a service failed at startup...)."""


def bind(port: int, what: str) -> socket.socket:
    """A listening TCP socket on 127.0.0.1:``port`` (0: any free port)."""
    # IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY on accepted connections only when
    # the listening socket says it is TCP; without it every response waits ~40 ms
    # for Nagle and delayed ACKs.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((HOST, port))
    except OSError as exc:
        sock.close()
        raise LabError(
            f"{what}: cannot listen on {HOST}:{port} ({exc.strerror}); "
            "is another lab running? Set LAB_PORT to another base port (or 0 for any)."
        ) from None
    sock.listen(128)
    sock.setblocking(False)
    return sock


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        # The lab installs one handler for all its servers; uvicorn's own would fight over it.
        yield


@dataclass
class RunningServer:
    """A uvicorn server serving one app on one socket, as a task of the current loop."""

    name: str
    url: str
    server: Any
    sock: socket.socket
    task: asyncio.Task[None] = field(repr=False)

    async def stop(self) -> None:
        """Ask the server to finish its requests and stop; wait for it."""
        self.server.should_exit = True
        try:
            await self.task
        except LabError:
            pass
        finally:
            self.sock.close()
            # A client that never closes its keep-alive connection (the Azure SDKs leave
            # connections of unread 401 answers to the garbage collector) outlives the
            # graceful shutdown; cut it so no socket is left open.
            for connection in list(self.server.server_state.connections):
                transport = getattr(connection, "transport", None)
                if transport is not None:
                    transport.abort()
            await asyncio.sleep(0)


async def start_server(
    name: str,
    app: ASGIApp,
    sock: socket.socket,
    *,
    tls: tuple[Path, Path] | None = None,
    log_level: str = "warning",
    startup_timeout: float = 30.0,
) -> RunningServer:
    """Serve ``app`` on ``sock`` (https when ``tls`` = (cert, key)); return once it listens."""
    port = sock.getsockname()[1]
    options: dict[str, Any] = {}
    if tls is not None:
        options = {"ssl_certfile": str(tls[0]), "ssl_keyfile": str(tls[1])}
    config = uvicorn.Config(
        app,
        log_level=log_level,
        access_log=log_level in ("debug", "info"),
        lifespan="auto",
        timeout_graceful_shutdown=3,
        **options,
    )
    server = _Server(config)

    async def serve() -> None:
        try:
            await server.serve(sockets=[sock])
        except SystemExit:
            # uvicorn exits the process when an app's startup fails; turn that into an error.
            raise LabError(f"{name}: the app failed to start") from None

    task = asyncio.create_task(serve(), name=f"lab-{name}")
    loop = asyncio.get_running_loop()
    deadline = loop.time() + startup_timeout
    while not server.started:
        if task.done():
            task.result()  # raises the startup error
            raise LabError(f"{name}: stopped during startup")
        if loop.time() > deadline:
            server.should_exit = True
            raise LabError(f"{name}: not listening after {startup_timeout:.0f} s")
        await asyncio.sleep(0.01)
    scheme = "https" if tls is not None else "http"
    return RunningServer(name, f"{scheme}://{HOST}:{port}", server, sock, task)
