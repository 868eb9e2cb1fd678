"""The toy Blob Storage's state: containers and blob metadata in SQLite, blob bytes in files.

Each stored blob body is an immutable file with a unique name under ``blobs/``. An
upload streams into ``tmp/``, is fsynced, renamed into ``blobs/`` (and the directory
fsynced), and only then does one SQLite transaction point the blob at it; the file it
replaces is removed after the commit. So a crash at any moment leaves either the old
blob or the new one, never a mix; files no row points to are swept at startup.

A reader opens the file while holding the database lock, so a concurrent overwrite
cannot remove it in between: once open, the bytes stay readable.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import secrets
import sqlite3
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Final

import anyio.to_thread

from .._files import fsync_dir
from .._http import BodyTooLarge
from ..resource import ServiceError

__all__ = [
    "SCHEMA",
    "Blob",
    "BlobFiles",
    "Conditions",
    "Container",
    "ContentSettings",
    "StorageError",
    "Upload",
    "check_upload",
    "create_container",
    "delete_blob",
    "delete_container",
    "get_blob",
    "get_container",
    "list_blobs",
    "list_containers",
    "new_etag",
    "open_blob",
    "put_blob",
    "referenced_files",
]

SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS containers (
    account TEXT NOT NULL,
    name TEXT NOT NULL,
    etag TEXT NOT NULL,
    created REAL NOT NULL,
    last_modified REAL NOT NULL,
    metadata TEXT NOT NULL,
    PRIMARY KEY (account, name)
);
CREATE TABLE IF NOT EXISTS blobs (
    account TEXT NOT NULL,
    container TEXT NOT NULL,
    name TEXT NOT NULL,
    file TEXT NOT NULL UNIQUE,
    size INTEGER NOT NULL,
    etag TEXT NOT NULL,
    md5 BLOB NOT NULL,
    content_type TEXT,
    content_encoding TEXT,
    content_language TEXT,
    content_disposition TEXT,
    cache_control TEXT,
    created REAL NOT NULL,
    last_modified REAL NOT NULL,
    metadata TEXT NOT NULL,
    PRIMARY KEY (account, container, name),
    FOREIGN KEY (account, container) REFERENCES containers (account, name) ON DELETE CASCADE
);
"""

_WRITE_CHUNK: Final = 1024 * 1024
#: Names sort by code point (UTF-8 byte order in SQLite); this sorts after any real name.
_BEYOND: Final = "\U0010ffff"


class StorageError(ServiceError):
    """An answer other than success, shaped like Storage's ``<Error><Code/><Message/></Error>``."""


def container_not_found() -> StorageError:
    return StorageError(404, "ContainerNotFound", "The specified container does not exist.")


def blob_not_found() -> StorageError:
    return StorageError(404, "BlobNotFound", "The specified blob does not exist.")


def condition_not_met() -> StorageError:
    return StorageError(
        412,
        "ConditionNotMet",
        "The condition specified using HTTP conditional header(s) is not met.",
    )


def new_etag() -> str:
    """A strong ETag shaped like Azure's (``"0x8D..."``)."""
    return f'"0x8D{secrets.token_hex(7).upper()}"'


@dataclass(frozen=True, slots=True)
class ContentSettings:
    """The HTTP content headers stored with a blob."""

    content_type: str | None = None
    content_encoding: str | None = None
    content_language: str | None = None
    content_disposition: str | None = None
    cache_control: str | None = None


@dataclass(frozen=True, slots=True)
class Container:
    """A container row."""

    name: str
    etag: str
    created: float
    last_modified: float
    metadata: dict[str, str] = field(hash=False)


@dataclass(frozen=True, slots=True)
class Blob:
    """A blob row: where its bytes are and what to answer about them."""

    name: str
    file: str
    size: int
    etag: str
    md5: bytes
    content: ContentSettings
    created: float
    last_modified: float
    metadata: dict[str, str] = field(hash=False)

    @property
    def md5_b64(self) -> str:
        return base64.b64encode(self.md5).decode("ascii")


@dataclass(frozen=True, slots=True)
class Conditions:
    """``If-Match`` / ``If-None-Match`` (``*`` or ETags); date conditions are not supported."""

    if_match: frozenset[str] | None = None
    if_none_match: frozenset[str] | None = None

    def check_match(self, current: Blob | None) -> None:
        """412 when ``If-Match`` is given and ``current`` (absent: ``None``) fails it."""
        if self.if_match is not None and (current is None or not _matches(self.if_match, current)):
            raise condition_not_met()

    def check_write(self, current: Blob | None) -> None:
        """For uploads: ``If-None-Match: *`` on an existing blob is 409 ``BlobAlreadyExists``."""
        self.check_match(current)
        if self.if_none_match is not None and current is not None:
            if "*" in self.if_none_match:
                raise StorageError(409, "BlobAlreadyExists", "The specified blob already exists.")
            if _matches(self.if_none_match, current):
                raise condition_not_met()

    def not_modified(self, current: Blob) -> bool:
        """For reads: 412 when ``If-Match`` fails; True when ``If-None-Match`` says 304."""
        self.check_match(current)
        return self.if_none_match is not None and _matches(self.if_none_match, current)


def _matches(etags: frozenset[str], blob: Blob) -> bool:
    return "*" in etags or blob.etag.strip('"') in etags


@dataclass(frozen=True, slots=True)
class Upload:
    """A received body, already durable in ``blobs/`` under ``file``."""

    file: str
    size: int
    md5: bytes


# -- files -----------------------------------------------------------------------


class BlobFiles:
    """The directory of blob bodies: ``blobs/`` (referenced files) and ``tmp/`` (uploads)."""

    def __init__(self, root: Path) -> None:
        self.data = root / "blobs"
        self.tmp = root / "tmp"
        for directory in (self.data, self.tmp):
            directory.mkdir(parents=True, exist_ok=True, mode=0o700)

    def path(self, file: str) -> Path:
        return self.data / file

    async def receive(self, chunks: AsyncIterator[bytes], limit: int) -> Upload:
        """Stream ``chunks`` to a durable file; raise :class:`BodyTooLarge` past ``limit``."""
        file = uuid.uuid4().hex
        tmp = self.tmp / file
        out = await anyio.to_thread.run_sync(_create, tmp)
        digest = hashlib.md5()  # Content-MD5 is MD5 by definition
        size = 0
        pending = bytearray()
        try:
            async for chunk in chunks:
                size += len(chunk)
                if size > limit:
                    raise BodyTooLarge(limit)
                pending += chunk
                if len(pending) >= _WRITE_CHUNK:
                    await anyio.to_thread.run_sync(_write, out, digest, bytes(pending))
                    pending.clear()
            await anyio.to_thread.run_sync(_finish, out, digest, bytes(pending))
            await anyio.to_thread.run_sync(self._publish, tmp, self.path(file))
        except BaseException:
            out.close()
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise
        return Upload(file=file, size=size, md5=digest.digest())

    def _publish(self, tmp: Path, final: Path) -> None:
        os.rename(tmp, final)
        fsync_dir(self.data)

    def remove(self, files: list[str]) -> None:
        """Delete bodies no row points to any more (after the commit that dropped them)."""
        for file in files:
            with contextlib.suppress(FileNotFoundError):
                self.path(file).unlink()

    def sweep(self, referenced: set[str]) -> int:
        """Remove unfinished uploads and unreferenced bodies (left by a crash); how many."""
        removed = 0
        for directory, keep in ((self.tmp, set[str]()), (self.data, referenced)):
            for entry in directory.iterdir():
                if entry.name not in keep:
                    with contextlib.suppress(FileNotFoundError):
                        entry.unlink()
                    removed += 1
        return removed


def _create(path: Path) -> IO[bytes]:
    return open(path, "xb")


def _write(out: IO[bytes], digest: Any, data: bytes) -> None:
    digest.update(data)
    out.write(data)


def _finish(out: IO[bytes], digest: Any, data: bytes) -> None:
    _write(out, digest, data)
    out.flush()
    os.fsync(out.fileno())
    out.close()


# -- containers ------------------------------------------------------------------


def _container(row: tuple[Any, ...]) -> Container:
    name, etag, created, modified, metadata = row
    return Container(name, etag, created, modified, json.loads(metadata))


def create_container(
    conn: sqlite3.Connection, account: str, name: str, metadata: dict[str, str], now: float
) -> Container:
    """A new container; 409 ``ContainerAlreadyExists`` if the name is taken."""
    try:
        conn.execute(
            "INSERT INTO containers VALUES (?, ?, ?, ?, ?, ?)",
            (account, name, new_etag(), now, now, json.dumps(metadata)),
        )
    except sqlite3.IntegrityError:
        raise StorageError(
            409, "ContainerAlreadyExists", "The specified container already exists."
        ) from None
    return get_container(conn, account, name)


def get_container(conn: sqlite3.Connection, account: str, name: str) -> Container:
    """A container, or 404 ``ContainerNotFound``."""
    row = conn.execute(
        "SELECT name, etag, created, last_modified, metadata FROM containers"
        " WHERE account = ? AND name = ?",
        (account, name),
    ).fetchone()
    if row is None:
        raise container_not_found()
    return _container(row)


def delete_container(conn: sqlite3.Connection, account: str, name: str) -> list[str]:
    """Drop a container and its blobs; returns the files to remove after the commit."""
    get_container(conn, account, name)
    files = [
        r[0]
        for r in conn.execute(
            "SELECT file FROM blobs WHERE account = ? AND container = ?", (account, name)
        )
    ]
    conn.execute("DELETE FROM containers WHERE account = ? AND name = ?", (account, name))
    return files


def list_containers(
    conn: sqlite3.Connection, account: str, prefix: str, after: str, limit: int
) -> tuple[list[Container], str | None]:
    """Containers named ``prefix...`` after ``after``, by name; a page and where to go on."""
    rows = conn.execute(
        "SELECT name, etag, created, last_modified, metadata FROM containers"
        " WHERE account = ? AND name > ? AND name >= ? ORDER BY name LIMIT ?",
        (account, after, prefix, limit + 1),
    )
    page: list[Container] = []
    more = False
    for row in rows:
        if not row[0].startswith(prefix):
            break
        if len(page) == limit:
            more = True
            break
        page.append(_container(row))
    return page, (page[-1].name if more else None)


# -- blobs -----------------------------------------------------------------------

_BLOB_COLUMNS: Final = (
    "name, file, size, etag, md5, content_type, content_encoding, content_language,"
    " content_disposition, cache_control, created, last_modified, metadata"
)


def _blob(row: tuple[Any, ...]) -> Blob:
    name, file, size, etag, md5, ctype, cenc, clang, cdisp, cache, created, modified, meta = row
    return Blob(
        name=name,
        file=file,
        size=size,
        etag=etag,
        md5=md5,
        content=ContentSettings(ctype, cenc, clang, cdisp, cache),
        created=created,
        last_modified=modified,
        metadata=json.loads(meta),
    )


def _find_blob(conn: sqlite3.Connection, account: str, container: str, name: str) -> Blob | None:
    row = conn.execute(
        f"SELECT {_BLOB_COLUMNS} FROM blobs WHERE account = ? AND container = ? AND name = ?",
        (account, container, name),
    ).fetchone()
    return None if row is None else _blob(row)


def get_blob(conn: sqlite3.Connection, account: str, container: str, name: str) -> Blob:
    """A blob, or 404 (``ContainerNotFound`` or ``BlobNotFound``)."""
    found = _find_blob(conn, account, container, name)
    if found is None:
        get_container(conn, account, container)
        raise blob_not_found()
    return found


def open_blob(
    conn: sqlite3.Connection, files: BlobFiles, account: str, container: str, name: str
) -> tuple[Blob, IO[bytes]]:
    """A blob and its open body (opened under the database lock: see the module docstring)."""
    found = get_blob(conn, account, container, name)
    return found, open(files.path(found.file), "rb")  # the caller closes it


def check_upload(
    conn: sqlite3.Connection, account: str, container: str, name: str, conditions: Conditions
) -> None:
    """Raise now what :func:`put_blob` would raise, to refuse before receiving the body."""
    get_container(conn, account, container)
    conditions.check_write(_find_blob(conn, account, container, name))


def referenced_files(conn: sqlite3.Connection) -> set[str]:
    """Every body file a blob row points to."""
    return {row[0] for row in conn.execute("SELECT file FROM blobs")}


def put_blob(
    conn: sqlite3.Connection,
    account: str,
    container: str,
    name: str,
    *,
    upload: Upload,
    content: ContentSettings,
    metadata: dict[str, str],
    conditions: Conditions,
    now: float,
) -> tuple[Blob, str | None]:
    """Point ``name`` at an uploaded body; returns the blob and the file it replaced."""
    get_container(conn, account, container)
    current = _find_blob(conn, account, container, name)
    conditions.check_write(current)
    conn.execute(
        "INSERT OR REPLACE INTO blobs VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            account,
            container,
            name,
            upload.file,
            upload.size,
            new_etag(),
            upload.md5,
            content.content_type,
            content.content_encoding,
            content.content_language,
            content.content_disposition,
            content.cache_control,
            now if current is None else current.created,
            now,
            json.dumps(metadata),
        ),
    )
    saved = get_blob(conn, account, container, name)
    return saved, (None if current is None else current.file)


def delete_blob(
    conn: sqlite3.Connection, account: str, container: str, name: str, conditions: Conditions
) -> str:
    """Remove a blob; returns its file, to delete after the commit."""
    current = get_blob(conn, account, container, name)
    conditions.check_match(current)
    conn.execute(
        "DELETE FROM blobs WHERE account = ? AND container = ? AND name = ?",
        (account, container, name),
    )
    return current.file


def list_blobs(
    conn: sqlite3.Connection,
    account: str,
    container: str,
    *,
    prefix: str,
    delimiter: str | None,
    after: str,
    limit: int,
) -> tuple[list[Blob | str], str | None]:
    """Blobs named ``prefix...`` after ``after``, by name; with a ``delimiter``, names that
    go on past it collapse into one prefix entry (a ``str``). Returns a page and the name
    to continue after."""
    get_container(conn, account, container)
    page: list[Blob | str] = []
    position = after
    while True:
        rows = conn.execute(
            f"SELECT {_BLOB_COLUMNS} FROM blobs WHERE account = ? AND container = ?"
            " AND name > ? AND name >= ? ORDER BY name LIMIT ?",
            (account, container, position, prefix, limit + 1),
        ).fetchall()
        if not rows:
            return page, None
        for row in rows:
            name: str = row[0]
            if not name.startswith(prefix):
                return page, None
            if len(page) == limit:
                return page, position
            cut = name.find(delimiter, len(prefix)) if delimiter else -1
            if cut >= 0:
                virtual = name[: cut + len(delimiter or "")]
                page.append(virtual)
                position = virtual + _BEYOND  # skip every name under this prefix
                break  # query again from past the prefix
            page.append(_blob(row))
            position = name
        else:  # every row fit: there are no more
            return page, None
