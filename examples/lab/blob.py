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

import logging
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Final

import anyio.to_thread
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import HTTPConnection, Request
from starlette.responses import Response
from starlette.routing import Route

from tokenguard import (
    InvalidRequest,
    InvalidToken,
    KeysUnavailable,
    MissingToken,
    TokenGuardError,
    TokenValidator,
)

from . import blob_io
from . import blob_shapes as shapes
from . import blob_store as store
from ._resource import LabHeaders, protected_app
from ._store import Database
from .blob_service import (
    READ_ROLES,
    STORAGE_AUDIENCES,
    STORAGE_RESOURCE,
    WRITE_ROLES,
    Storage,
    includes_metadata,
    storage_of,
    unsupported,
)
from .blob_store import BlobFiles, StorageError
from .rbac import RoleAssignments

__all__ = [
    "DEFAULT_MAX_UPLOAD_BYTES",
    "READ_ROLES",
    "STORAGE_AUDIENCES",
    "WRITE_ROLES",
    "create_app",
]

logger = logging.getLogger("tokenguard.lab.blob")

DEFAULT_MAX_UPLOAD_BYTES: Final = 64 * 1024 * 1024
#: The service version answered when the client sends none (what azure-storage-blob 12.31 sends).
DEFAULT_VERSION: Final = "2026-10-06"


# -- account -------------------------------------------------------------------------


async def account_endpoint(request: Request) -> Response:
    """List containers, or account information."""
    svc = storage_of(request)
    account, _, _ = svc.names(request)
    query = request.query_params
    if query.get("comp") == "list" and "restype" not in query and request.method == "GET":
        svc.authorize(request, write=False, container=None)
        listing = shapes.listing(request, delimited=False)
        page, after = await svc.db.read(
            partial(
                store.list_containers,
                account=account,
                prefix=listing.prefix,
                after=listing.after,
                limit=listing.size,
            )
        )
        return shapes.containers_xml(
            svc.endpoint(account),
            listing,
            page,
            None if after is None else shapes.encode_marker(after),
            with_metadata=includes_metadata(request),
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
    raise unsupported(request)


# -- containers ----------------------------------------------------------------------


async def container_endpoint(request: Request) -> Response:
    """Create, delete, get properties of, or list the blobs of a container."""
    svc = storage_of(request)
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
        raise unsupported(request)
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


async def _list_blobs(request: Request, svc: Storage, account: str, container: str) -> Response:
    listing = shapes.listing(request, delimited=True)
    entries, after = await svc.db.read(
        partial(
            store.list_blobs,
            account=account,
            container=container,
            prefix=listing.prefix,
            delimiter=listing.delimiter,
            after=listing.after,
            limit=listing.size,
        )
    )
    return shapes.blobs_xml(
        svc.endpoint(account),
        container,
        listing,
        entries,
        None if after is None else shapes.encode_marker(after),
        with_metadata=includes_metadata(request),
    )


# -- blobs ---------------------------------------------------------------------------


async def blob_endpoint(request: Request) -> Response:
    """Upload, download, get properties of, or delete a blob."""
    svc = storage_of(request)
    account, container, name = svc.names(request)
    assert container is not None
    assert name is not None
    if "comp" in request.query_params:
        raise unsupported(request)
    method = request.method
    svc.authorize(request, write=method in ("PUT", "DELETE"), container=container)
    if method == "PUT":
        return await blob_io.put_blob(request, svc, account, container, name)
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
        return await blob_io.blob_properties(request, svc, account, container, name)
    return await blob_io.get_blob(request, svc, account, container, name)


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

    app = protected_app(
        routes=_ROUTES,
        validator=validator,
        audience=STORAGE_RESOURCE,
        challenge_params=challenge_params,
        on_error=_token_error,
        headers=Middleware(LabHeaders, version=DEFAULT_VERSION),
        exception_handlers={
            StorageError: _storage_error,
            HTTPException: _http_error,
            Exception: _server_error,
        },
        on_shutdown=db.close,
    )
    app.state.storage = Storage(
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
