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
from functools import partial
from pathlib import Path
from typing import Final, Unpack

import anyio.to_thread
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ..resource import Database, LabHeaders, ServiceOptions, protected_app
from . import bodies, shapes, store
from .service import (
    STORAGE_RESOURCE,
    Storage,
    StorageErrors,
    unsupported,
)
from .store import BlobFiles, StorageError

__all__ = ["DEFAULT_MAX_UPLOAD_BYTES", "DEFAULT_VERSION", "create_app"]

logger = logging.getLogger("tokenguard.lab.blob")

DEFAULT_MAX_UPLOAD_BYTES: Final = 64 * 1024 * 1024
#: The service version answered when the client sends none (what azure-storage-blob 12.31 sends).
DEFAULT_VERSION: Final = "2026-10-06"


# -- account -------------------------------------------------------------------------


async def account_endpoint(request: Request) -> Response:
    """List containers, or account information."""
    svc = Storage.of(request)
    account, _, _ = svc.names(request)
    query = request.query_params
    if query.get("comp") == "list" and "restype" not in query and request.method == "GET":
        svc.allow(request, write=False, container=None)
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
        return shapes.containers_xml(svc.endpoint(account), listing, page, after)
    if query.get("restype") == "account" and query.get("comp") == "properties":
        svc.allow(request, write=False, container=None)
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
    svc = Storage.of(request)
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
    svc.allow(request, write=write, container=container)
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
    return shapes.blobs_xml(svc.endpoint(account), container, listing, entries, after)


# -- blobs ---------------------------------------------------------------------------


async def blob_endpoint(request: Request) -> Response:
    """Upload, download, get properties of, or delete a blob."""
    svc = Storage.of(request)
    account, container, name = svc.names(request)
    assert container is not None
    assert name is not None
    if "comp" in request.query_params:
        raise unsupported(request)
    method = request.method
    svc.allow(request, write=method in ("PUT", "DELETE"), container=container)
    if method == "PUT":
        return await bodies.put_blob(request, svc, account, container, name)
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
        return await bodies.blob_properties(request, svc, account, container, name)
    return await bodies.get_blob(request, svc, account, container, name)


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
    account: str | None = None,
    max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES,
    **options: Unpack[ServiceOptions],
) -> Starlette:
    """The toy Blob Storage as a Starlette app; state under ``state_dir/storage/``.

    ``options`` are every toy service's (:class:`~examples.lab.resource.ServiceOptions`):
    the validator must accept ``https://storage.azure.com/`` (and/or without the slash);
    ``public_url`` is the service URL (clients add ``/{account}``). ``account`` limits the
    account name (any valid name when None, each with its own containers). Uploads above
    ``max_upload_bytes`` get 413 ``RequestBodyTooLarge``.
    """
    if max_upload_bytes < 1:
        raise ValueError("max_upload_bytes must be positive")
    root = Path(options["state_dir"]) / "storage"
    db = Database(root / "blob.db", store.SCHEMA)
    files = BlobFiles(root)
    swept = files.sweep(db.read_sync(store.referenced_files))
    if swept:
        logger.info("removed %d unfinished or unreferenced blob files", swept)
    storage = Storage(
        options=options,
        audience=STORAGE_RESOURCE,
        db=db,
        dialect=StorageErrors(),
        files=files,
        account=account,
        max_upload_bytes=max_upload_bytes,
    )
    headers = Middleware(LabHeaders, version=DEFAULT_VERSION)
    return protected_app(storage, routes=_ROUTES, headers=headers)
