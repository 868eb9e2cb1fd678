"""HTTP over loopback: the uvicorn server subprocess and a keep-alive load generator.

The generator is plain asyncio streams on persistent HTTP/1.1 connections, closed
loop (each connection sends its next request when the previous answer is in). It
reports its own CPU use next to the server's, so a generator-bound run shows.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ._asgi import loopback_socket
from ._measure import percentile
from ._running import Running

__all__ = ["Load", "ServerProcess", "get_request", "run_load"]

_ROOT = Path(__file__).resolve().parent.parent
_TICKS = os.sysconf("SC_CLK_TCK")


def get_request(token: str | None = None) -> bytes:
    """A keep-alive ``GET /data``, with a bearer token if given."""
    auth = f"Authorization: Bearer {token}\r\n" if token else ""
    return f"GET /data HTTP/1.1\r\nHost: 127.0.0.1\r\n{auth}\r\n".encode("ascii")


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS  # utime + stime


@dataclass
class Load:
    """The outcome of one load run."""

    seconds: float
    latencies: list[float] = field(default_factory=list)
    statuses: Counter[int] = field(default_factory=Counter)
    client_cpu: float = 0.0  # CPU seconds of the generator's process per wall second
    server_cpu: float = 0.0  # same for the server (1.0 = one core busy)

    @property
    def count(self) -> int:
        """Completed requests."""
        return len(self.latencies)

    @property
    def rate(self) -> float:
        """Completed requests per second."""
        return self.count / self.seconds

    def ms(self, fraction: float) -> float:
        """A latency percentile in milliseconds."""
        return percentile(self.latencies, fraction) * 1000


def _content_length(head: bytes) -> int:
    for line in head.lower().split(b"\r\n"):
        if line.startswith(b"content-length:"):
            return int(line[15:])
    raise ValueError("response without content-length")


#: ``take()`` gives the next request and when it is due (``perf_counter`` time), or ``None``.
_Take = Callable[[], tuple[bytes, float] | None]


async def _connection(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, take: _Take, load: Load
) -> None:
    latencies, statuses = load.latencies, load.statuses
    while (item := take()) is not None:
        request, due = item
        wait = due - time.perf_counter()
        if wait > 0:
            await asyncio.sleep(wait)
            due = time.perf_counter()  # on time; the timer's own slop is not the server's
        writer.write(request)
        head = await reader.readuntil(b"\r\n\r\n")
        length = _content_length(head)
        if length:
            await reader.readexactly(length)
        # Timed from when the request was due: a slow answer that made this request
        # late shows in its latency too (no coordinated omission).
        latencies.append(time.perf_counter() - due)
        statuses[int(head[9:12])] += 1


async def run_load(
    port: int,
    requests: Sequence[bytes],
    *,
    total: int,
    connections: int,
    max_seconds: float,
    rate: float | None = None,
    server_pid: int | None = None,
    stop: asyncio.Event | None = None,
) -> Load:
    """Send ``total`` requests (cycling through ``requests``) over ``connections``
    keep-alive connections, stopping early after ``max_seconds`` or once ``stop`` is set.

    Without ``rate`` every connection sends its next request as soon as the previous
    answer is in (closed loop, full speed); with ``rate`` the requests are due at that
    many per second in total (paced).
    """
    sent = 0
    started = deadline = 0.0

    def take() -> tuple[bytes, float] | None:
        nonlocal sent
        now = time.perf_counter()
        if sent >= total or now >= deadline or (stop is not None and stop.is_set()):
            return None
        due = now if rate is None else started + sent / rate
        sent += 1
        return requests[sent % len(requests)], due

    load = Load(0.0)
    opened: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
    try:
        for _ in range(connections):
            opened.append(await asyncio.open_connection("127.0.0.1", port))
        cpu0 = time.process_time()
        server0 = _cpu_seconds(server_pid) if server_pid else 0.0
        started = time.perf_counter()
        deadline = started + max_seconds
        await asyncio.gather(*(_connection(r, w, take, load) for r, w in opened))
        load.seconds = time.perf_counter() - started
    finally:
        for _, writer in opened:
            writer.close()
    load.client_cpu = (time.process_time() - cpu0) / load.seconds
    if server_pid:
        load.server_cpu = (_cpu_seconds(server_pid) - server0) / load.seconds
    return load


class ServerProcess(Running):
    """``python -m bench._server`` on a fresh loopback socket; ready when it answers 200."""

    def __init__(self, mode: str, env: dict[str, str], probe: bytes) -> None:
        self.mode = mode
        self._env = {**os.environ, **env}
        self._probe = probe
        self._sock = loopback_socket()
        self.port: int = self._sock.getsockname()[1]
        self._proc: asyncio.subprocess.Process | None = None

    @property
    def pid(self) -> int:
        """The server's process id."""
        assert self._proc is not None
        return self._proc.pid

    async def start(self) -> None:
        fd = self._sock.fileno()
        self._proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bench._server",
            str(fd),
            self.mode,
            pass_fds=(fd,),
            cwd=_ROOT,
            env=self._env,
        )
        self._sock.close()  # the server holds its own copy
        deadline = time.perf_counter() + 30
        while True:
            if self._proc.returncode is not None:
                raise RuntimeError(f"bench server ({self.mode}) exited at startup")
            try:
                probe: Load | None = await asyncio.wait_for(
                    run_load(self.port, [self._probe], total=1, connections=1, max_seconds=5), 5
                )
            except (OSError, TimeoutError):
                probe = None
            if probe is not None and probe.statuses.get(200):
                return
            if time.perf_counter() > deadline:
                raise RuntimeError(f"bench server ({self.mode}) not ready after 30 s")
            await asyncio.sleep(0.1)

    async def stop(self) -> None:
        if self._proc is None or self._proc.returncode is not None:
            return
        self._proc.terminate()
        try:
            await asyncio.wait_for(self._proc.wait(), 10)
        except TimeoutError:
            self._proc.kill()
            await self._proc.wait()
