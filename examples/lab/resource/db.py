"""SQLite for the toy resources: one connection, WAL, ``synchronous=FULL``, off the event loop.

Every acknowledged write must survive a SIGKILL right after the answer. SQLite gives
that when each write is its own committed transaction and the answer is sent only after
:meth:`Database.write` returns: in WAL mode with ``synchronous=FULL`` a commit fsyncs
the log before it returns.

Calls run in worker threads (``anyio.to_thread``) so the event loop never waits on the
disk; one lock serialises them on the single connection, which keeps the code simple
and is plenty for a lab.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import TypeVar

import anyio.to_thread

__all__ = ["Database"]

T = TypeVar("T")


class Database:
    """A SQLite database file with a schema, used from worker threads one call at a time."""

    def __init__(self, path: Path, schema: str) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        # isolation_level=None: we issue BEGIN/COMMIT ourselves, nothing is implicit.
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        try:
            mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if mode != "wal":
                raise RuntimeError(f"{path}: SQLite refused WAL mode ({mode})")
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute("PRAGMA foreign_keys=ON")
            conn.execute("PRAGMA busy_timeout=5000")
            conn.executescript(schema)
        except BaseException:
            conn.close()
            raise
        self.path = path
        self._conn = conn
        self._lock = threading.Lock()

    # -- synchronous (for startup code and the worker threads) ----------------

    def read_sync(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn(conn)`` under the lock (reads need no transaction: calls are serialised)."""
        with self._lock:
            return fn(self._conn)

    def write_sync(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn(conn)`` in one transaction; committed (and on disk) when this returns.

        An exception from ``fn`` rolls the transaction back and propagates.
        """
        with self._lock:
            conn = self._conn
            conn.execute("BEGIN IMMEDIATE")
            try:
                result = fn(conn)
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
            return result

    # -- asynchronous (for request handlers) -----------------------------------

    async def read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """:meth:`read_sync` in a worker thread."""
        return await anyio.to_thread.run_sync(partial(self.read_sync, fn))

    async def write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """:meth:`write_sync` in a worker thread. Not cancelled with the request: a write
        that started finishes (it may then be durable without having been acknowledged,
        which is allowed; the reverse is not)."""
        return await anyio.to_thread.run_sync(partial(self.write_sync, fn))

    def close(self) -> None:
        """Close the connection (idempotent)."""
        with self._lock:
            self._conn.close()
