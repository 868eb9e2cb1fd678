"""The toy Blob Storage's state, name rules, authorization (RBAC by object id) and errors."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from starlette.requests import HTTPConnection, Request
from starlette.responses import Response

from tokenguard import (
    Identity,
    InvalidRequest,
    InvalidToken,
    KeysUnavailable,
    MissingToken,
    TokenGuardError,
)

from ..resource import Dialect, Resource, ServiceError
from . import shapes
from .shapes import xml_text
from .store import BlobFiles, StorageError

__all__ = [
    "READ_ROLES",
    "STORAGE_AUDIENCES",
    "STORAGE_RESOURCE",
    "WRITE_ROLES",
    "Storage",
    "StorageErrors",
    "unsupported",
]

STORAGE_RESOURCE: Final = "https://storage.azure.com"
STORAGE_AUDIENCES: Final = ("https://storage.azure.com/", "https://storage.azure.com")
READ_ROLES: Final = frozenset(
    {"Storage Blob Data Reader", "Storage Blob Data Contributor", "Storage Blob Data Owner"}
)
WRITE_ROLES: Final = frozenset({"Storage Blob Data Contributor", "Storage Blob Data Owner"})
_ACCOUNT: Final = re.compile(r"[a-z0-9]{3,24}")
_CONTAINER: Final = re.compile(r"[a-z0-9](?!.*--)[a-z0-9-]{1,61}[a-z0-9]")
_MAX_BLOB_NAME: Final = 1024
_MAX_SEGMENTS: Final = 254
_UNSUPPORTED_COMP: Final = frozenset(
    {"block", "blocklist", "metadata", "properties", "lease", "snapshot", "tags", "acl", "copy"}
)


def _valid_blob_name(name: str) -> bool:
    # Characters XML 1.0 cannot carry would break listings; control characters are refused too.
    return 0 < len(name) <= _MAX_BLOB_NAME and name.count("/") < _MAX_SEGMENTS and xml_text(name)


def unsupported(request: Request) -> StorageError:
    """400 for operations the lab does not implement (naming ``comp`` only if we know it)."""
    comp = request.query_params.get("comp")
    what = f"comp={comp}" if comp in _UNSUPPORTED_COMP else "This operation"
    return StorageError(
        400,
        "InvalidQueryParameterValue",
        f"{what} is not supported by the lab storage (single-request block blobs only).",
    )


_AUTH_FAILED: Final = (
    "Server failed to authenticate the request. Please refer to the information in the "
    "www-authenticate header."
)


class StorageErrors(Dialect):
    """Storage's XML errors: ``<Error><Code/><Message/></Error>`` and ``x-ms-error-code``."""

    def challenge(self, authority: str, audience: str) -> dict[str, str]:
        return {"authorization_uri": f"{authority}/oauth2/authorize", "resource_id": audience}

    def render(self, error: ServiceError, conn: HTTPConnection) -> Response:
        state = conn.scope.get("state") or {}
        return shapes.error_response(error, str(state.get("request_id", "-")))

    def token_error(self, exc: TokenGuardError) -> ServiceError:
        if isinstance(exc, MissingToken):
            return StorageError(401, "NoAuthenticationInformation", _AUTH_FAILED)
        if isinstance(exc, InvalidToken | InvalidRequest):
            return StorageError(
                exc.status_code, "InvalidAuthenticationInfo", _AUTH_FAILED, detail=exc.description
            )
        if isinstance(exc, KeysUnavailable):
            return StorageError(503, "ServerBusy", exc.description)
        return StorageError(exc.status_code, "AuthorizationFailure", exc.description)

    def route_error(self, method: str, status: int, detail: str) -> ServiceError:
        if status == 405:
            return StorageError(
                405, "UnsupportedHttpVerb", "The resource doesn't support specified Http Verb."
            )
        return StorageError(
            400, "InvalidUri", "The requested URI does not represent any resource on the server."
        )

    def server_error(self) -> ServiceError:
        return StorageError(500, "InternalError", "The lab storage failed; see its log.")

    def forbidden(self, identity: Identity, action: str, scope: str) -> ServiceError:
        return StorageError(
            403,
            "AuthorizationPermissionMismatch",
            "This request is not authorized to perform this operation using this permission.",
        )


@dataclass(frozen=True, kw_only=True)
class Storage(Resource):
    """What the handlers share: the resource's state, blob files, names and limits."""

    files: BlobFiles
    account: str | None
    max_upload_bytes: int

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

    def allow(self, request: Request, *, write: bool, container: str | None) -> None:
        """RBAC by object id at the container's scope (or the account's): a container
        assignment covers that container only."""
        scope = "/storage" if container is None else f"/storage/containers/{container}"
        if write:
            self.authorize(request, WRITE_ROLES, scope, "blobs/write")
        else:
            self.authorize(request, READ_ROLES, scope, "blobs/read")
