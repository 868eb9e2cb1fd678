"""A toy Azure Key Vault (secrets only) behind tokenguard, as ``azure-keyvault-secrets`` uses it.

Routes as the SDK sends them (any ``api-version``; it is required, as in Azure)::

    PUT    /secrets/{name}                   set (a new version)
    GET    /secrets/{name}/ | /{version}     get latest | a version
    PATCH  /secrets/{name}/ | /{version}     update attributes, content type, tags
    DELETE /secrets/{name}                   soft delete
    GET    /secrets, /secrets/{name}/versions, /deletedsecrets     lists (maxresults, nextLink)
    GET    /deletedsecrets/{name}            get a deleted secret
    POST   /deletedsecrets/{name}/recover    recover
    DELETE /deletedsecrets/{name}            purge

Authentication is Key Vault's challenge: a request without a token gets 401 and
``WWW-Authenticate: Bearer authorization="{authority}/{tenant}", resource="https://vault.azure.net"``.
Authorization is RBAC at scope ``/keyvault`` by the caller's object id: "Key Vault
Secrets User" reads, "Key Vault Secrets Officer" (or "Key Vault Administrator") also
writes, deletes, recovers and purges, and reads deleted secrets.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Final, TypeVar, Unpack

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import HTTPConnection, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tokenguard import (
    Identity,
    InvalidRequest,
    InvalidToken,
    KeysUnavailable,
    MissingToken,
    TokenGuardError,
)

from ..resource import (
    Database,
    Dialect,
    LabHeaders,
    Resource,
    ServiceError,
    ServiceOptions,
    caller_label,
    protected_app,
)
from . import parse, store
from .store import Deleted, SecretVersion, VaultError

__all__ = [
    "DEFAULT_RECOVERABLE_DAYS",
    "KEYVAULT_AUDIENCE",
    "READ_ROLES",
    "WRITE_ROLES",
    "create_app",
]

KEYVAULT_AUDIENCE: Final = "https://vault.azure.net"
RBAC_SCOPE: Final = "/keyvault"
READ_ROLES: Final = frozenset(
    {"Key Vault Secrets User", "Key Vault Secrets Officer", "Key Vault Administrator"}
)
WRITE_ROLES: Final = frozenset({"Key Vault Secrets Officer", "Key Vault Administrator"})
DEFAULT_RECOVERABLE_DAYS: Final = 90

T = TypeVar("T")


class _KeyVaultErrors(Dialect):
    """Key Vault's JSON errors: ``{"error": {"code", "message", "innererror"}}``."""

    def challenge(self, authority: str, audience: str) -> dict[str, str]:
        return {"authorization": authority, "resource": audience}

    def render(self, error: ServiceError, conn: HTTPConnection) -> Response:
        body: dict[str, Any] = {"code": error.code, "message": error.message}
        if error.inner is not None:
            body["innererror"] = {"code": error.inner}
        return JSONResponse({"error": body}, status_code=error.status, headers=error.headers)

    def token_error(self, exc: TokenGuardError) -> ServiceError:
        if isinstance(exc, MissingToken):
            return VaultError(
                401, "Unauthorized", "AKV10000: Request is missing a Bearer or PoP token."
            )
        if isinstance(exc, InvalidToken):
            return VaultError(401, "Unauthorized", f"AKV10032: {exc.description}.")
        if isinstance(exc, InvalidRequest):
            return VaultError(400, "BadParameter", exc.description)
        if isinstance(exc, KeysUnavailable):
            return VaultError(503, "ServiceUnavailable", exc.description)
        return VaultError(exc.status_code, "Forbidden", exc.description)

    def route_error(self, method: str, status: int, detail: str) -> ServiceError:
        if status == 405:
            return VaultError(405, "MethodNotAllowed", f"The method {method} is not allowed here.")
        if status == 404:
            return VaultError(404, "NotFound", "There is no such operation in this vault.")
        return VaultError(status, "BadParameter", detail)

    def server_error(self) -> ServiceError:
        return VaultError(500, "InternalServerError", "The lab vault failed; see its log.")

    def forbidden(self, identity: Identity, action: str, scope: str) -> ServiceError:
        return VaultError(
            403,
            "Forbidden",
            "Caller is not authorized to perform action on resource. If role assignments "
            "were recently changed, please wait several minutes for role assignments to "
            f"become effective. Caller: {caller_label(identity)} Action: "
            f"'Microsoft.KeyVault/vaults/secrets/{action}' Resource: '{scope}'",
            inner="ForbiddenByRbac",
        )


@dataclass(frozen=True, kw_only=True)
class _Vault(Resource):
    """What the handlers share: the resource's state and the retention of deleted secrets."""

    recoverable_days: int

    def now(self) -> int:
        return int(self.clock())

    async def write(self, change: Callable[..., T], **args: Any) -> T:
        """The store's ``change`` in one durable transaction, made at :meth:`now`."""
        return await self.db.write(partial(change, **args, now=self.now()))

    # -- request checks ---------------------------------------------------------

    def begin(self, request: Request, *, write: bool = False) -> None:
        """Check ``api-version`` and the caller's role (RBAC, by object id)."""
        if not request.query_params.get("api-version"):
            raise parse.bad("The api-version query parameter (?api-version=) is required.")
        if write:
            self.authorize(request, WRITE_ROLES, RBAC_SCOPE, "setSecret/action")
        else:
            self.authorize(request, READ_ROLES, RBAC_SCOPE, "getSecret/action")

    def next_link(self, request: Request, path: str, token: str | None, size: int) -> str | None:
        if token is None:
            return None
        api_version = request.query_params["api-version"]
        return (
            f"{self.base_url}{path}?api-version={api_version}"
            f"&{parse.SKIP_TOKEN}={token}&maxresults={size}"
        )

    # -- JSON shapes ------------------------------------------------------------

    def attributes(self, v: SecretVersion) -> dict[str, Any]:
        attrs: dict[str, Any] = {"enabled": v.enabled}
        if v.nbf is not None:
            attrs["nbf"] = v.nbf
        if v.exp is not None:
            attrs["exp"] = v.exp
        attrs["created"] = v.created
        attrs["updated"] = v.updated
        days = self.recoverable_days
        attrs["recoveryLevel"] = (
            "Recoverable+Purgeable" if days == 90 else "CustomizedRecoverable+Purgeable"
        )
        attrs["recoverableDays"] = days
        return attrs

    def shape(
        self, v: SecretVersion, *, value: bool = False, versioned: bool = True
    ) -> dict[str, Any]:
        """A ``SecretBundle`` (``value=True``), or an item of a list (``SecretItem``)."""
        body: dict[str, Any] = {}
        if value:
            body["value"] = v.value
        sid = f"{self.base_url}/secrets/{v.name}"
        body["id"] = f"{sid}/{v.version}" if versioned else sid
        if v.content_type is not None:
            body["contentType"] = v.content_type
        body["attributes"] = self.attributes(v)
        if v.tags is not None:
            body["tags"] = v.tags
        return body

    def deleted(self, v: SecretVersion, d: Deleted, *, item: bool = False) -> dict[str, Any]:
        """A ``DeletedSecretBundle`` (or a ``DeletedSecretItem``); never the value."""
        body: dict[str, Any] = {"recoveryId": f"{self.base_url}/deletedsecrets/{v.name}"}
        body.update(self.shape(v, versioned=not item))
        body.update({"deletedDate": d.deleted_date, "scheduledPurgeDate": d.scheduled_purge_date})
        return body


# -- handlers --------------------------------------------------------------------


async def set_secret(request: Request) -> Response:
    """``PUT /secrets/{name}``: a new version; 409 while a deleted secret holds the name."""
    vault = _Vault.of(request)
    vault.begin(request, write=True)
    name = parse.name(request)
    body = await parse.json_body(request)
    value = parse.text(body.get("value"), "value", parse.MAX_VALUE_BYTES)
    saved = await vault.write(store.set_secret, name=name, value=value, **parse.properties(body))
    return JSONResponse(vault.shape(saved, value=True))


async def get_secret(request: Request) -> Response:
    """``GET /secrets/{name}/[{version}]``: the value; 403 ``SecretDisabled`` when disabled."""
    vault = _Vault.of(request)
    vault.begin(request)
    name, version = parse.name(request), parse.version(request)
    found = await vault.db.read(partial(store.get_version, name=name, version=version))
    if not found.enabled:
        raise VaultError(
            403,
            "Forbidden",
            "Operation get is not allowed on a disabled secret.",
            inner="SecretDisabled",
        )
    return JSONResponse(vault.shape(found, value=True))


async def update_secret(request: Request) -> Response:
    """``PATCH /secrets/{name}/[{version}]``: attributes, content type, tags (not the value)."""
    vault = _Vault.of(request)
    vault.begin(request, write=True)
    name, version = parse.name(request), parse.version(request)
    body = await parse.json_body(request)
    saved = await vault.write(store.update, name=name, version=version, **parse.properties(body))
    return JSONResponse(vault.shape(saved))


async def secret_root(request: Request) -> Response:
    """``/secrets/{name}``: PUT sets, DELETE soft-deletes, GET reads the latest version."""
    if request.method == "PUT":
        return await set_secret(request)
    if request.method != "DELETE":
        return await get_secret(request)
    vault = _Vault.of(request)
    vault.begin(request, write=True)
    name = parse.name(request)
    latest, deleted = await vault.write(
        store.delete, name=name, retention_days=vault.recoverable_days
    )
    return JSONResponse(vault.deleted(latest, deleted))


async def one_version(request: Request) -> Response:
    """``/secrets/{name}/[{version}]``: GET reads, PATCH updates."""
    if request.method == "PATCH":
        return await update_secret(request)
    return await get_secret(request)


async def list_secrets(request: Request) -> Response:
    """``GET /secrets``: the latest version of each secret, without values."""
    vault = _Vault.of(request)
    vault.begin(request)
    size = parse.page_size(request)
    after = parse.skip_token(request, str)
    page, token = await vault.db.read(partial(store.list_latest, after=after, limit=size))
    return JSONResponse(
        {
            "value": [vault.shape(v, versioned=False) for v in page],
            "nextLink": vault.next_link(request, "/secrets", token, size),
        }
    )


async def list_versions(request: Request) -> Response:
    """``GET /secrets/{name}/versions``: every version, oldest first, without values."""
    vault = _Vault.of(request)
    vault.begin(request)
    name = parse.name(request)
    size = parse.page_size(request)
    after = parse.skip_token(request, int)
    page, token = await vault.db.read(
        partial(store.list_versions, name=name, after=after, limit=size)
    )
    return JSONResponse(
        {
            "value": [vault.shape(v) for v in page],
            "nextLink": vault.next_link(
                request, f"/secrets/{name}/versions", None if token is None else str(token), size
            ),
        }
    )


async def list_deleted(request: Request) -> Response:
    """``GET /deletedsecrets``: deleted secrets (needs the write role, as in Azure)."""
    vault = _Vault.of(request)
    vault.begin(request, write=True)
    size = parse.page_size(request)
    after = parse.skip_token(request, str)
    page, token = await vault.db.read(
        partial(store.list_deleted, after=after, limit=size, now=vault.now())
    )
    return JSONResponse(
        {
            "value": [vault.deleted(v, d, item=True) for v, d in page],
            "nextLink": vault.next_link(request, "/deletedsecrets", token, size),
        }
    )


async def deleted_secret(request: Request) -> Response:
    """``/deletedsecrets/{name}``: GET reads the deleted secret, DELETE purges it (204)."""
    vault = _Vault.of(request)
    vault.begin(request, write=True)
    name = parse.name(request)
    if request.method == "DELETE":
        await vault.write(store.purge, name=name)
        return Response(status_code=204)
    latest, deleted = await vault.db.read(partial(store.get_deleted, name=name, now=vault.now()))
    return JSONResponse(vault.deleted(latest, deleted))


async def recover_deleted(request: Request) -> Response:
    """``POST /deletedsecrets/{name}/recover``: the secret is live again."""
    vault = _Vault.of(request)
    vault.begin(request, write=True)
    name = parse.name(request)
    recovered = await vault.write(store.recover, name=name)
    return JSONResponse(vault.shape(recovered))


# -- the app -----------------------------------------------------------------------

_ROUTES: Final = [
    Route("/secrets", list_secrets, methods=["GET"]),
    Route("/secrets/{name}", secret_root, methods=["GET", "PUT", "DELETE"]),
    Route("/secrets/{name}/", one_version, methods=["GET", "PATCH"]),
    Route("/secrets/{name}/versions", list_versions, methods=["GET"]),
    Route("/secrets/{name}/{version}", one_version, methods=["GET", "PATCH"]),
    Route("/deletedsecrets", list_deleted, methods=["GET"]),
    Route("/deletedsecrets/{name}", deleted_secret, methods=["GET", "DELETE"]),
    Route("/deletedsecrets/{name}/recover", recover_deleted, methods=["POST"]),
]


def create_app(
    *, recoverable_days: int = DEFAULT_RECOVERABLE_DAYS, **options: Unpack[ServiceOptions]
) -> Starlette:
    """The toy Key Vault as a Starlette app; state in ``state_dir/keyvault/vault.db``.

    ``options`` are every toy service's (:class:`~examples.lab.resource.ServiceOptions`):
    the validator must accept the audience ``https://vault.azure.net``; secret ids and
    ``nextLink`` are built from ``public_url``. Deleted secrets are kept
    ``recoverable_days`` (7 to 90, as in Key Vault).
    """
    if not 7 <= recoverable_days <= 90:
        raise ValueError("recoverable_days must be from 7 to 90, as in Key Vault")
    vault = _Vault(
        options=options,
        audience=KEYVAULT_AUDIENCE,
        db=Database(Path(options["state_dir"]) / "keyvault" / "vault.db", store.SCHEMA),
        dialect=_KeyVaultErrors(),
        recoverable_days=recoverable_days,
    )
    static = {"x-ms-keyvault-service-version": "lab"}
    return protected_app(vault, routes=_ROUTES, headers=Middleware(LabHeaders, static=static))
