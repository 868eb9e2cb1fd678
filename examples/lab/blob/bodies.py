"""Blob bodies in and out of the toy Blob Storage: uploads streamed to disk, ranged downloads.

An upload is written to a temporary file while its MD5 is computed, made durable
(fsync, rename, fsync of the directory) and only then committed in SQLite, after which
it is acknowledged. A download streams an already open, immutable file, so an overwrite
racing with it cannot change the bytes mid-response.
"""

from __future__ import annotations

import base64
import hashlib
import os
from functools import partial
from typing import IO, Final

import anyio.to_thread
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from .._http import BodyTooLarge, ascii_int
from . import shapes, store
from .service import Storage
from .store import Blob, StorageError

__all__ = ["FileSlice", "blob_properties", "get_blob", "put_blob", "too_large"]

_MAX_RANGE_MD5: Final = 4 * 1024 * 1024
_READ_CHUNK: Final = 256 * 1024


async def put_blob(
    request: Request, svc: Storage, account: str, container: str, name: str
) -> Response:
    """Put Blob (block blob, one request): stream to a durable file, then commit the row."""
    _check_blob_type(request)
    conditions = shapes.conditions(request)
    content = shapes.content_settings(request)
    metadata = shapes.metadata(request)
    expected = [shapes.md5_header(request, h) for h in ("content-md5", "x-ms-blob-content-md5")]
    declared = ascii_int(request.headers.get("content-length", ""))
    if declared is not None and declared > svc.max_upload_bytes:
        raise too_large(svc.max_upload_bytes)
    # Refuse before receiving the body when we already know the answer.
    await svc.db.read(
        partial(
            store.check_upload,
            account=account,
            container=container,
            name=name,
            conditions=conditions,
        )
    )
    try:
        upload = await svc.files.receive(request.stream(), svc.max_upload_bytes)
    except BodyTooLarge:
        raise too_large(svc.max_upload_bytes) from None
    except ClientDisconnect:
        return Response(status_code=400)  # nobody is listening; nothing was stored
    try:
        _check_md5(expected, upload.md5)
        saved, replaced = await svc.db.write(
            partial(
                store.put_blob,
                account=account,
                container=container,
                name=name,
                upload=upload,
                content=content,
                metadata=metadata,
                conditions=conditions,
                now=svc.clock(),
            )
        )
    except BaseException:
        await anyio.to_thread.run_sync(svc.files.remove, [upload.file])
        raise
    if replaced is not None:
        await anyio.to_thread.run_sync(svc.files.remove, [replaced])
    return _created(saved)


def _check_blob_type(request: Request) -> None:
    """The lab stores block blobs only: ``x-ms-blob-type`` must say ``BlockBlob``."""
    blob_type = request.headers.get("x-ms-blob-type")
    if blob_type is None:
        raise StorageError(400, "MissingRequiredHeader", "The header x-ms-blob-type is required.")
    if blob_type != "BlockBlob":
        raise StorageError(
            400, "InvalidHeaderValue", "The lab stores block blobs only (x-ms-blob-type)."
        )


def _check_md5(expected: list[bytes | None], received: bytes) -> None:
    """Every MD5 the client declared (``None``: not declared) matches the received body."""
    if any(md5 is not None and md5 != received for md5 in expected):
        raise StorageError(
            400,
            "Md5Mismatch",
            "The MD5 value specified in the request did not match with the MD5 value "
            "calculated by the server.",
        )


def _created(saved: Blob) -> Response:
    """201 for a committed upload, naming its new ETag and MD5."""
    return Response(
        status_code=201,
        headers={
            "ETag": saved.etag,
            "Last-Modified": shapes.http_date(saved.last_modified),
            "Content-MD5": saved.md5_b64,
            "x-ms-request-server-encrypted": "true",
        },
    )


def too_large(limit: int) -> StorageError:
    """413 ``RequestBodyTooLarge``, naming the lab's limit."""
    return StorageError(
        413,
        "RequestBodyTooLarge",
        f"The request body is too large and exceeds the maximum permissible limit "
        f"({limit} bytes in this lab).",
    )


def _not_modified(found: Blob) -> Response:
    return Response(
        status_code=304,
        headers={"ETag": found.etag, "Last-Modified": shapes.http_date(found.last_modified)},
    )


async def blob_properties(
    request: Request, svc: Storage, account: str, container: str, name: str
) -> Response:
    """Get Blob Properties (HEAD)."""
    found = await svc.db.read(
        partial(store.get_blob, account=account, container=container, name=name)
    )
    if shapes.conditions(request).not_modified(found):
        return _not_modified(found)
    headers = shapes.blob_headers(found)
    headers["Content-Length"] = str(found.size)
    headers["Content-MD5"] = found.md5_b64
    return Response(headers=headers)


async def get_blob(
    request: Request, svc: Storage, account: str, container: str, name: str
) -> Response:
    """Get Blob: whole (200) or one range (206, 416 past the end), streamed from the file."""
    wanted = shapes.parse_range(request)
    range_md5 = request.headers.get("x-ms-range-get-content-md5", "").lower() == "true"
    span = None if wanted is None or wanted[1] is None else wanted[1] - wanted[0] + 1
    if range_md5 and (span is None or span > _MAX_RANGE_MD5):
        raise StorageError(
            400,
            "InvalidHeaderValue",
            "x-ms-range-get-content-md5 needs a range of at most 4 MiB.",
        )
    found, body = await svc.db.read(
        partial(store.open_blob, files=svc.files, account=account, container=container, name=name)
    )
    try:
        if shapes.conditions(request).not_modified(found):
            body.close()
            return _not_modified(found)
        headers = shapes.blob_headers(found)
        if wanted is None:
            start, length, status = 0, found.size, 200
            headers["Content-MD5"] = found.md5_b64
        else:
            start, last = wanted
            if start >= found.size:
                raise StorageError(
                    416,
                    "InvalidRange",
                    "The range specified is invalid for the current size of the resource.",
                    headers={"Content-Range": f"bytes */{found.size}"},
                )
            last = found.size - 1 if last is None else min(last, found.size - 1)
            length, status = last - start + 1, 206
            headers["Content-Range"] = f"bytes {start}-{last}/{found.size}"
            headers["x-ms-blob-content-md5"] = found.md5_b64
            if range_md5:
                headers["Content-MD5"] = await anyio.to_thread.run_sync(
                    _md5_of, body, start, length
                )
        headers["Content-Length"] = str(length)
        return FileSlice(body, start, length, status, headers)
    except BaseException:
        body.close()
        raise


def _md5_of(body: IO[bytes], start: int, length: int) -> str:
    data = os.pread(body.fileno(), length, start)
    return base64.b64encode(hashlib.md5(data).digest()).decode("ascii")


class FileSlice(Response):
    """Streams ``length`` bytes of an open file from ``start``, then closes it."""

    def __init__(
        self, body: IO[bytes], start: int, length: int, status: int, headers: dict[str, str]
    ) -> None:
        super().__init__(status_code=status, headers=headers)
        self.file = body
        self.start = start
        self.length = length

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            start = {"status": self.status_code, "headers": self.raw_headers}
            await send({"type": "http.response.start", **start})
            offset, end = self.start, self.start + self.length
            while scope["method"] != "HEAD" and offset < end:
                chunk = await anyio.to_thread.run_sync(
                    os.pread, self.file.fileno(), min(_READ_CHUNK, end - offset), offset
                )
                if not chunk:  # bodies are immutable: this would be a damaged store
                    raise RuntimeError("blob file shorter than its recorded size")
                offset += len(chunk)
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            self.file.close()
