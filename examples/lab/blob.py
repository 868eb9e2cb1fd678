"""A toy Azure Blob Storage behind tokenguard, as ``azure-storage-blob`` uses it.

Path-style addressing, as the SDK uses for 127.0.0.1 (``{public_url}/{account}``)::

    GET    /{account}/?comp=list                             list containers
    GET    /{account}/?restype=account&comp=properties       account information
    PUT    /{account}/{container}?restype=container          create a container (201)
    DELETE /{account}/{container}?restype=container          delete it (202)
    GET    /{account}/{container}?restype=container          its properties (HEAD too)
    GET    /{account}/{container}?restype=container&comp=list  list blobs (prefix, delimiter,
                                                               marker, maxresults)
    PUT    /{account}/{container}/{blob}                     upload a block blob in one request
    GET    /{account}/{container}/{blob}                     download (x-ms-range / Range)
    HEAD   /{account}/{container}/{blob}                     properties
    DELETE /{account}/{container}/{blob}                     delete (202)

Authorization is RBAC by the caller's object id: "Storage Blob Data Reader" reads and
lists, "Storage Blob Data Contributor" (or Owner) also writes and deletes, assigned at
``/storage`` or ``/storage/containers/{name}``. Staged block uploads (``comp=block``),
snapshots, leases and SAS are out of scope: such requests get a clear 400.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import logging
import os
import re
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import IO, Final

import anyio.to_thread
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import ClientDisconnect, HTTPConnection, Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from tokenguard import (
    InvalidRequest,
    InvalidToken,
    KeysUnavailable,
    MissingToken,
    TokenGuardError,
    TokenGuardMiddleware,
    TokenValidator,
    challenge,
)

from . import blob_shapes as shapes
from . import blob_store as store
from ._resource import (
    BodyTooLarge,
    LabHeaders,
    allowed,
    ascii_int,
    caller_label,
    forbidden_challenge,
    identity_of,
)
from ._store import Database
from .blob_store import Blob, BlobFiles, StorageError
from .rbac import RoleAssignments

__all__ = [
    "DEFAULT_MAX_UPLOAD_BYTES",
    "READ_ROLES",
    "STORAGE_AUDIENCES",
    "WRITE_ROLES",
    "create_app",
]

logger = logging.getLogger("tokenguard.lab.blob")

STORAGE_RESOURCE: Final = "https://storage.azure.com"
STORAGE_AUDIENCES: Final = ("https://storage.azure.com/", "https://storage.azure.com")
READ_ROLES: Final = frozenset(
    {"Storage Blob Data Reader", "Storage Blob Data Contributor", "Storage Blob Data Owner"}
)
WRITE_ROLES: Final = frozenset({"Storage Blob Data Contributor", "Storage Blob Data Owner"})
DEFAULT_MAX_UPLOAD_BYTES: Final = 64 * 1024 * 1024
#: The service version answered when the client sends none (what azure-storage-blob 12.31 sends).
DEFAULT_VERSION: Final = "2026-10-06"
_MAX_RANGE_MD5: Final = 4 * 1024 * 1024
_READ_CHUNK: Final = 256 * 1024
_ACCOUNT: Final = re.compile(r"[a-z0-9]{3,24}")
_CONTAINER: Final = re.compile(r"[a-z0-9](?!.*--)[a-z0-9-]{1,61}[a-z0-9]")
_MAX_BLOB_NAME: Final = 1024
_MAX_SEGMENTS: Final = 254
_UNSUPPORTED_COMP: Final = frozenset(
    {"block", "blocklist", "metadata", "properties", "lease", "snapshot", "tags", "acl", "copy"}
)


def _valid_blob_name(name: str) -> bool:
    # Characters XML 1.0 cannot carry would break listings; control characters are refused too.
    return (
        0 < len(name) <= _MAX_BLOB_NAME
        and name.count("/") < _MAX_SEGMENTS
        and all(_xml_char(c) for c in name)
    )


def _xml_char(c: str) -> bool:
    return " " <= c < "\x7f" or "\xa0" <= c < "\ud800" or "\ue000" <= c < "\ufffe" or c > "\uffff"


def _unsupported(request: Request) -> StorageError:
    comp = request.query_params.get("comp")
    what = f"comp={comp}" if comp in _UNSUPPORTED_COMP else "This operation"
    return StorageError(
        400,
        "InvalidQueryParameterValue",
        f"{what} is not supported by the lab storage (single-request block blobs only).",
    )


@dataclass(frozen=True)
class _Storage:
    """Per-app settings the handlers share."""

    db: Database
    files: BlobFiles
    rbac: RoleAssignments
    base_url: str
    account: str | None
    challenge_params: dict[str, str]
    max_upload_bytes: int
    clock: Callable[[], float]

    def endpoint(self, account: str) -> str:
        return f"{self.base_url}/{account}/"

    def names(self, request: Request) -> tuple[str, str | None, str | None]:
        """Account, container and blob names from the path, validated."""
        account: str = request.path_params["account"]
        if not _ACCOUNT.fullmatch(account) or (self.account and account != self.account):
            raise StorageError(
                400, "InvalidUri", "The requested URI does not represent any resource."
            )
        container: str | None = request.path_params.get("container")
        if container is not None and not _CONTAINER.fullmatch(container):
            raise StorageError(
                400,
                "InvalidResourceName",
                "Container names are 3 to 63 lowercase letters, digits and single dashes.",
            )
        name: str | None = request.path_params.get("blob")
        if name is not None and not _valid_blob_name(name):
            raise StorageError(
                400, "InvalidResourceName", "The specified resource name is not valid."
            )
        return account, container, name

    def authorize(self, request: Request, *, write: bool, container: str | None) -> None:
        """RBAC by object id at the container's scope (or the account's)."""
        identity = identity_of(request)
        if identity.audience.rstrip("/") != STORAGE_RESOURCE:
            # Only if the validator was built for more audiences than storage's.
            exc = InvalidToken(reason="wrong_audience")
            raise StorageError(
                401,
                "InvalidAuthenticationInfo",
                "Server failed to authenticate the request. The audience is not accepted.",
                headers={"WWW-Authenticate": challenge(exc, None, self.challenge_params)},
            )
        scope = "/storage" if container is None else f"/storage/containers/{container}"
        if not allowed(self.rbac, identity, WRITE_ROLES if write else READ_ROLES, scope):
            logger.info("forbidden: %s at %s (write=%s)", caller_label(identity), scope, write)
            raise StorageError(
                403,
                "AuthorizationPermissionMismatch",
                "This request is not authorized to perform this operation using this permission.",
                headers={"WWW-Authenticate": forbidden_challenge(self.challenge_params)},
            )


def _storage(request: Request) -> _Storage:
    storage: _Storage = request.app.state.storage
    return storage


def _includes_metadata(request: Request) -> bool:
    include = request.query_params.get("include", "")
    return "metadata" in {p.strip().lower() for p in include.split(",")}


# -- account -------------------------------------------------------------------------


async def account_endpoint(request: Request) -> Response:
    """List containers, or account information."""
    svc = _storage(request)
    account, _, _ = svc.names(request)
    query = request.query_params
    if query.get("comp") == "list" and "restype" not in query and request.method == "GET":
        svc.authorize(request, write=False, container=None)
        page, after = await svc.db.read(
            partial(
                store.list_containers,
                account=account,
                prefix=query.get("prefix", ""),
                after=shapes.decode_marker(query.get("marker")),
                limit=shapes.page_size(request),
            )
        )
        return shapes.containers_xml(
            svc.endpoint(account),
            request,
            page,
            None if after is None else shapes.encode_marker(after),
            with_metadata=_includes_metadata(request),
        )
    if query.get("restype") == "account" and query.get("comp") == "properties":
        svc.authorize(request, write=False, container=None)
        return Response(
            headers={
                "x-ms-sku-name": "Standard_LRS",
                "x-ms-account-kind": "StorageV2",
                "x-ms-is-hns-enabled": "false",
            }
        )
    raise _unsupported(request)


# -- containers ----------------------------------------------------------------------


async def container_endpoint(request: Request) -> Response:
    """Create, delete, get properties of, or list the blobs of a container."""
    svc = _storage(request)
    account, container, _ = svc.names(request)
    assert container is not None
    query, method = request.query_params, request.method
    if query.get("restype") != "container":
        raise StorageError(
            400,
            "InvalidQueryParameterValue",
            "restype=container is required (the lab has no $root container).",
        )
    comp = query.get("comp")
    write = method in ("PUT", "DELETE")
    if comp not in (None, "list") or (comp == "list" and method != "GET"):
        raise _unsupported(request)
    svc.authorize(request, write=write, container=container)
    if comp == "list":
        return await _list_blobs(request, svc, account, container)
    if method == "PUT":
        if request.headers.get("x-ms-blob-public-access"):
            raise StorageError(
                409,
                "PublicAccessNotPermitted",
                "Public access is not permitted on this storage account.",
            )
        created = await svc.db.write(
            partial(
                store.create_container,
                account=account,
                name=container,
                metadata=shapes.metadata(request),
                now=svc.clock(),
            )
        )
        headers = shapes.container_headers(created)
        return Response(status_code=201, headers={k: headers[k] for k in ("ETag", "Last-Modified")})
    if method == "DELETE":
        files = await svc.db.write(partial(store.delete_container, account=account, name=container))
        await anyio.to_thread.run_sync(svc.files.remove, files)
        return Response(status_code=202)
    found = await svc.db.read(partial(store.get_container, account=account, name=container))
    return Response(headers=shapes.container_headers(found))


async def _list_blobs(request: Request, svc: _Storage, account: str, container: str) -> Response:
    query = request.query_params
    delimiter = query.get("delimiter") or None
    entries, after = await svc.db.read(
        partial(
            store.list_blobs,
            account=account,
            container=container,
            prefix=query.get("prefix", ""),
            delimiter=delimiter,
            after=shapes.decode_marker(query.get("marker")),
            limit=shapes.page_size(request),
        )
    )
    return shapes.blobs_xml(
        svc.endpoint(account),
        container,
        request,
        entries,
        None if after is None else shapes.encode_marker(after),
        with_metadata=_includes_metadata(request),
    )


# -- blobs ---------------------------------------------------------------------------


async def blob_endpoint(request: Request) -> Response:
    """Upload, download, get properties of, or delete a blob."""
    svc = _storage(request)
    account, container, name = svc.names(request)
    assert container is not None
    assert name is not None
    if "comp" in request.query_params:
        raise _unsupported(request)
    method = request.method
    svc.authorize(request, write=method in ("PUT", "DELETE"), container=container)
    if method == "PUT":
        return await _put_blob(request, svc, account, container, name)
    if method == "DELETE":
        file = await svc.db.write(
            partial(
                store.delete_blob,
                account=account,
                container=container,
                name=name,
                conditions=shapes.conditions(request),
            )
        )
        await anyio.to_thread.run_sync(svc.files.remove, [file])
        return Response(status_code=202, headers={"x-ms-delete-type-permanent": "true"})
    if method == "HEAD":
        return await _blob_properties(request, svc, account, container, name)
    return await _get_blob(request, svc, account, container, name)


async def _put_blob(
    request: Request, svc: _Storage, account: str, container: str, name: str
) -> Response:
    blob_type = request.headers.get("x-ms-blob-type")
    if blob_type is None:
        raise StorageError(400, "MissingRequiredHeader", "The header x-ms-blob-type is required.")
    if blob_type != "BlockBlob":
        raise StorageError(
            400, "InvalidHeaderValue", "The lab stores block blobs only (x-ms-blob-type)."
        )
    conditions = shapes.conditions(request)
    content = shapes.content_settings(request)
    metadata = shapes.metadata(request)
    expected = [shapes.md5_header(request, h) for h in ("content-md5", "x-ms-blob-content-md5")]
    declared = ascii_int(request.headers.get("content-length", ""))
    if declared is not None and declared > svc.max_upload_bytes:
        raise _too_large(svc.max_upload_bytes)
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
        raise _too_large(svc.max_upload_bytes) from None
    except ClientDisconnect:
        return Response(status_code=400)  # nobody is listening; nothing was stored
    try:
        if any(md5 is not None and md5 != upload.md5 for md5 in expected):
            raise StorageError(
                400,
                "Md5Mismatch",
                "The MD5 value specified in the request did not match with the MD5 value "
                "calculated by the server.",
            )
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
    return Response(
        status_code=201,
        headers={
            "ETag": saved.etag,
            "Last-Modified": shapes.http_date(saved.last_modified),
            "Content-MD5": saved.md5_b64,
            "x-ms-request-server-encrypted": "true",
        },
    )


def _too_large(limit: int) -> StorageError:
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


async def _blob_properties(
    request: Request, svc: _Storage, account: str, container: str, name: str
) -> Response:
    found = await svc.db.read(
        partial(store.get_blob, account=account, container=container, name=name)
    )
    if shapes.conditions(request).not_modified(found):
        return _not_modified(found)
    headers = shapes.blob_headers(found)
    headers["Content-Length"] = str(found.size)
    headers["Content-MD5"] = found.md5_b64
    return Response(headers=headers)


async def _get_blob(
    request: Request, svc: _Storage, account: str, container: str, name: str
) -> Response:
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
        return _FileSlice(body, start, length, status, headers)
    except BaseException:
        body.close()
        raise


def _md5_of(body: IO[bytes], start: int, length: int) -> str:
    data = os.pread(body.fileno(), length, start)
    return base64.b64encode(hashlib.md5(data).digest()).decode("ascii")


class _FileSlice(Response):
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


# -- errors --------------------------------------------------------------------------


def _request_id(conn: HTTPConnection) -> str:
    state = conn.scope.get("state") or {}
    return str(state.get("request_id", "-"))


async def _storage_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StorageError)
    return shapes.error_response(exc, _request_id(request))


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 405:
        error = StorageError(
            405,
            "UnsupportedHttpVerb",
            "The resource doesn't support specified Http Verb.",
            headers=dict(exc.headers or {}),
        )
    else:
        error = StorageError(
            400, "InvalidUri", "The requested URI does not represent any resource on the server."
        )
    return shapes.error_response(error, _request_id(request))


async def _server_error(request: Request, exc: Exception) -> Response:
    error = StorageError(500, "InternalError", "The lab storage failed; see its log.")
    return shapes.error_response(error, _request_id(request))


_AUTH_FAILED: Final = (
    "Server failed to authenticate the request. Please refer to the information in the "
    "www-authenticate header."
)


def _token_error(conn: HTTPConnection, exc: TokenGuardError, headers: dict[str, str]) -> Response:
    """Storage shaped XML for tokenguard's rejections (the headers come from tokenguard)."""
    detail: str | None = None
    if isinstance(exc, MissingToken):
        error = StorageError(401, "NoAuthenticationInformation", _AUTH_FAILED, headers=headers)
    elif isinstance(exc, InvalidToken | InvalidRequest):
        error = StorageError(
            exc.status_code, "InvalidAuthenticationInfo", _AUTH_FAILED, headers=headers
        )
        detail = exc.description
    elif isinstance(exc, KeysUnavailable):
        error = StorageError(503, "ServerBusy", exc.description, headers=headers)
    else:
        error = StorageError(
            exc.status_code, "AuthorizationFailure", exc.description, headers=headers
        )
    return shapes.error_response(error, _request_id(conn), detail)


# -- the app -------------------------------------------------------------------------

_ALL: Final = ["GET", "HEAD", "PUT", "DELETE"]
_ROUTES: Final = [
    Route("/{account}", account_endpoint, methods=["GET", "HEAD"]),
    Route("/{account}/", account_endpoint, methods=["GET", "HEAD"]),
    Route("/{account}/{container}", container_endpoint, methods=_ALL),
    Route("/{account}/{container}/{blob:path}", blob_endpoint, methods=_ALL),
]


def create_app(
    *,
    validator: TokenValidator,
    rbac: RoleAssignments,
    state_dir: Path,
    public_url: str,
    authority: str,
    tenant_id: str,
    account: str | None = None,
    max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES,
    clock: Callable[[], float] = time.time,
) -> Starlette:
    """The toy Blob Storage as a Starlette app; state under ``state_dir/storage/``.

    ``validator`` must accept ``https://storage.azure.com/`` (and/or without the slash);
    the app warms it up at startup but does not close it. ``public_url`` is the
    service URL (clients add ``/{account}``); ``account`` limits the account name (any
    valid name when None, each with its own containers). Uploads above
    ``max_upload_bytes`` get 413 ``RequestBodyTooLarge``.
    """
    if max_upload_bytes < 1:
        raise ValueError("max_upload_bytes must be positive")
    root = Path(state_dir) / "storage"
    db = Database(root / "blob.db", store.SCHEMA)
    files = BlobFiles(root)
    swept = files.sweep(db.read_sync(store.referenced_files))
    if swept:
        logger.info("removed %d unfinished or unreferenced blob files", swept)
    challenge_params = {
        "authorization_uri": f"{authority.rstrip('/')}/{tenant_id}/oauth2/authorize",
        "resource_id": STORAGE_RESOURCE,
    }

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        try:
            yield
        finally:
            db.close()

    app = Starlette(
        routes=_ROUTES,
        middleware=[
            Middleware(LabHeaders, version=DEFAULT_VERSION),
            Middleware(
                TokenGuardMiddleware,
                validator=validator,
                realm=None,
                challenge_params=challenge_params,
                on_error=_token_error,
                close_validator=False,
            ),
        ],
        exception_handlers={
            StorageError: _storage_error,
            HTTPException: _http_error,
            Exception: _server_error,
        },
        lifespan=lifespan,
    )
    app.router.redirect_slashes = False
    app.state.storage = _Storage(
        db=db,
        files=files,
        rbac=rbac,
        base_url=public_url.rstrip("/"),
        account=account,
        challenge_params=challenge_params,
        max_upload_bytes=max_upload_bytes,
        clock=clock,
    )
    return app
