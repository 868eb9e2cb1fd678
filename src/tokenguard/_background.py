"""Detached background work under whichever async runtime runs the app (asyncio or trio).

Key fetches and the refresh timer must outlive the request that started them: a
cancelled request must not cancel the fetch other requests wait on, and a refresh
timer started by the first request must keep running after it. anyio (which
Starlette and httpx run on) has no detached tasks, so :func:`spawn` starts one on the
running event loop (``loop.create_task`` under asyncio, a system task under trio)
and gives it an anyio cancel scope and a "done" event, so its owner can stop it and
wait for it the same way on either runtime.

A job remembers the event loop (or trio run) it was started on: a validator can
outlive a loop (Starlette's ``TestClient`` runs one per request outside ``with``),
and a job of a finished loop is neither waited on nor cancelled, only forgotten.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import anyio

__all__ = ["Job", "current_loop", "spawn"]

logger = logging.getLogger("tokenguard")


def current_loop() -> object:
    """The running asyncio loop, or the trio run's token: what a job belongs to."""
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        pass
    try:
        trio = _trio()
    except ImportError:  # pragma: no cover - no loop at all: the asyncio message says so
        raise RuntimeError("tokenguard needs a running asyncio or trio event loop") from None
    return trio.lowlevel.current_trio_token()


def _trio() -> Any:
    """trio, imported by name: an optional runtime, so that a type checker run on an app
    that does not install it finds no import of it in tokenguard."""
    return importlib.import_module("trio")


class Job:
    """One detached task: :meth:`cancel` stops it, :meth:`wait` waits until it ended."""

    __slots__ = ("_done", "_scope", "_task", "loop")

    def __init__(self, loop: object) -> None:
        #: The loop (or trio run) the job runs on.
        self.loop = loop
        self._scope = anyio.CancelScope()
        self._done = anyio.Event()
        #: The asyncio task: asyncio keeps only weak references to running tasks.
        self._task: asyncio.Task[None] | None = None

    @property
    def alive(self) -> bool:
        """Not finished, and on the loop running now (a job of an ended loop is dead)."""
        return not self._done.is_set() and self.loop is current_loop()

    def cancel(self) -> None:
        """Ask the job to stop (it stops at its next await; harmless once it ended)."""
        if self.alive:
            self._scope.cancel()

    async def wait(self) -> None:
        """Wait until the job ended; cancelling the waiter leaves the job running."""
        if self.alive:
            await self._done.wait()


def spawn(work: Callable[[], Awaitable[None]], *, name: str) -> Job:
    """Run ``work()`` detached from the calling task, on the running loop."""
    loop = current_loop()
    job = Job(loop)

    async def run() -> None:
        try:
            with job._scope:
                await work()
        except Exception:
            # A trio system task must not raise (it would crash the run), and an
            # asyncio task's error would only surface when garbage collected.
            logger.exception("tokenguard background task failed", extra={"task": name})
        finally:
            job._done.set()

    if isinstance(loop, asyncio.AbstractEventLoop):
        job._task = loop.create_task(run(), name=name)
    else:
        _trio().lowlevel.spawn_system_task(run, name=name)
    return job
