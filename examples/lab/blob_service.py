"""The toy Blob Storage's settings, name rules and authorization (RBAC by object id)."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from starlette.requests import Request

from ._resource import allowed, caller_label, forbidden_challenge, identity_of
from ._store import Database
from .blob_shapes import xml_text
from .blob_store import BlobFiles, StorageError
from .rbac import RoleAssignments

__all__ = [
    "READ_ROLES",
    "STORAGE_AUDIENCES",
    "STORAGE_RESOURCE",
    "WRITE_ROLES",
    "Storage",
    "includes_metadata",
    "storage_of",
    "unsupported",
]

logger = logging.getLogger("tokenguard.lab.blob")

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


@dataclass(frozen=True)
class Storage:
    """Per-app settings the handlers share: state, RBAC, names and the authorization check."""

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
        scope = "/storage" if container is None else f"/storage/containers/{container}"
        if not allowed(self.rbac, identity, WRITE_ROLES if write else READ_ROLES, scope):
            logger.info("forbidden: %s at %s (write=%s)", caller_label(identity), scope, write)
            raise StorageError(
                403,
                "AuthorizationPermissionMismatch",
                "This request is not authorized to perform this operation using this permission.",
                headers={"WWW-Authenticate": forbidden_challenge(self.challenge_params)},
            )


def storage_of(request: Request) -> Storage:
    """The :class:`Storage` of the app serving ``request``."""
    storage: Storage = request.app.state.storage
    return storage


def includes_metadata(request: Request) -> bool:
    """Whether ``include=`` asks for metadata in a listing."""
    include = request.query_params.get("include", "")
    return "metadata" in {p.strip().lower() for p in include.split(",")}
