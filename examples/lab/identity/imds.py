"""The IMDS emulator: ``169.254.169.254`` as a VM sees it, on 127.0.0.1.

    GET /metadata/identity/oauth2/token?api-version=2018-02-01&resource=...   (Metadata: true)
        [&client_id=... | &object_id=... | &msi_res_id=... (alias mi_res_id)]
    GET /metadata/identity/info?api-version=...
    GET /metadata/instance[/compute|/network/...]?api-version=...[&format=text]
    GET /metadata/versions

Every answer is JSON; statuses and error bodies follow real IMDS (see
``shared/PROTOCOLS.md`` section 1): 400 for a bad request, 404 for an unknown identity,
405 for anything but GET, 429 past the per-identity rate limit. An identity selector that
is empty, repeated, combined with another, or spelled the App Service way (``principal_id``)
is 400, and one naming no user-assigned identity 404: never the system-assigned identity.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, Final

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from .._http import ascii_int
from .tenant import LabConfig, ManagedIdentity
from .tokens import (
    ALL_METHODS,
    IdentityNotSelected,
    RateLimiter,
    TokenService,
    resource_problem,
    select_identity,
)

__all__ = ["API_VERSIONS", "SELECTORS", "create_imds_app", "imds_error"]

#: api-version values IMDS accepts (newest last).
API_VERSIONS: Final = (
    "2017-03-01", "2017-04-02", "2017-08-01", "2017-10-01", "2017-12-01", "2018-02-01",
    "2018-04-02", "2018-10-01", "2019-02-01", "2019-03-11", "2019-04-30", "2019-06-01",
    "2019-06-04", "2019-08-01", "2019-08-15", "2019-11-01", "2020-06-01", "2020-07-15",
    "2020-09-01", "2020-10-01", "2020-12-01", "2021-01-01", "2021-02-01", "2021-03-01",
    "2021-05-01", "2021-08-01", "2021-10-01", "2021-11-01", "2021-11-15", "2021-12-13",
    "2023-07-01", "2023-11-15", "2024-03-15",
)  # fmt: skip
#: The user-assigned identity selectors IMDS reads (at most one per request; see
#: :data:`~examples.lab.identity.tokens.SELECTOR_KEYWORDS`). MSAL's newer releases send
#: ``mi_res_id``.
SELECTORS: Final = ("client_id", "object_id", "msi_res_id", "mi_res_id")


def imds_error(status: int, error: str, description: str, **headers: str) -> JSONResponse:
    """An IMDS error answer: ``{"error": ..., "error_description": ...}``."""
    return JSONResponse(
        {"error": error, "error_description": description}, status_code=status, headers=headers
    )


class _Imds:
    def __init__(self, config: LabConfig, tokens: TokenService, limiter: RateLimiter) -> None:
        self.config = config
        self.tokens = tokens
        self.limiter = limiter

    # -- checks every IMDS request goes through ---------------------------------

    @staticmethod
    def _refused(request: Request, *, need_version: bool = True) -> Response | None:
        if request.method != "GET":
            return imds_error(405, "invalid_request", "Method not allowed", Allow="GET")
        if "x-forwarded-for" in request.headers:
            # A relayed request did not come from inside the VM.
            return imds_error(400, "invalid_request", "Request contains X-Forwarded-For header")
        if request.headers.get("metadata", "").lower() != "true":
            return imds_error(400, "invalid_request", "Required metadata header not specified")
        if not need_version:
            return None
        version = request.query_params.get("api-version")
        if not version:
            return imds_error(
                400, "invalid_request", "Required query variable 'api-version' is missing"
            )
        if version not in API_VERSIONS:
            return JSONResponse(
                {
                    "error": "invalid_request",
                    "error_description": "Invalid api-version",
                    "newest-versions": list(API_VERSIONS[-3:][::-1]),
                },
                status_code=400,
            )
        return None

    def _identity(self, request: Request) -> ManagedIdentity | Response:
        try:
            return select_identity(self.config, request.query_params, SELECTORS)
        except IdentityNotSelected as exc:
            return imds_error(exc.status, "invalid_request", exc.description)

    # -- routes -----------------------------------------------------------------

    async def token(self, request: Request) -> Response:
        refused = self._refused(request)
        if refused is not None:
            return refused
        resource = request.query_params.get("resource", "")
        if not resource:
            return imds_error(
                400, "invalid_request", "Required query variable 'resource' is missing"
            )
        problem = resource_problem(resource)
        if problem is not None:
            return imds_error(400, "invalid_resource", problem)
        identity = self._identity(request)
        if isinstance(identity, Response):
            return identity
        if not self.limiter.allow(identity.object_id):
            return imds_error(
                429, "too_many_requests", "Too many requests, retry later", **{"Retry-After": "1"}
            )
        issued = self.tokens.token(identity, resource)
        now = int(self.tokens.issuer.clock())
        left = str(issued.expires_on - now)
        body = {
            "access_token": issued.token,
            "client_id": identity.client_id,
            "expires_in": left,
            "expires_on": str(issued.expires_on),
            "ext_expires_in": left,
            "not_before": str(issued.not_before),
            "resource": resource,
            "token_type": "Bearer",
        }
        return JSONResponse(body, headers={"Cache-Control": "no-store"})

    async def identity_info(self, request: Request) -> Response:
        refused = self._refused(request)
        if refused is not None:
            return refused
        return JSONResponse({"tenantId": self.config.tenant_id})

    async def versions(self, request: Request) -> Response:
        refused = self._refused(request, need_version=False)
        if refused is not None:
            return refused
        return JSONResponse({"apiVersions": list(API_VERSIONS)})

    async def instance(self, request: Request) -> Response:
        refused = self._refused(request)
        if refused is not None:
            return refused
        node: Any = instance_document(self.config)
        for part in filter(None, str(request.path_params.get("path", "")).split("/")):
            index = ascii_int(part) if isinstance(node, list) else None
            if isinstance(node, dict) and part in node:
                node = node[part]
            elif index is not None and index < len(node):
                node = node[index]
            else:
                return imds_error(404, "not_found", "Path not found")
        if request.query_params.get("format") == "text":
            if isinstance(node, dict | list):
                return imds_error(400, "invalid_request", "format=text needs a leaf value")
            return PlainTextResponse(str(node))
        return JSONResponse(node)

    async def not_found(self, request: Request) -> Response:
        return imds_error(404, "not_found", "Path not found")


def instance_document(config: LabConfig) -> dict[str, Any]:
    """``/metadata/instance`` for the lab VM (the fields apps look at)."""
    vm = config.vm
    return {
        "compute": {
            "azEnvironment": "AzurePublicCloud",
            "location": vm.location,
            "name": vm.name,
            "offer": "0001-com-ubuntu-server-jammy",
            "osType": vm.os_type,
            "provider": "Microsoft.Compute",
            "publisher": "canonical",
            "resourceGroupName": vm.resource_group,
            "resourceId": vm.resource_id,
            "sku": "22_04-lts-gen2",
            "subscriptionId": vm.subscription_id,
            "tags": "",
            "tagsList": [],
            "vmId": vm.vm_id,
            "vmSize": vm.vm_size,
            "zone": "",
        },
        "network": {
            "interface": [
                {
                    "ipv4": {
                        "ipAddress": [{"privateIpAddress": vm.private_ip, "publicIpAddress": ""}],
                        "subnet": [
                            {"address": vm.private_ip.rsplit(".", 1)[0] + ".0", "prefix": "24"}
                        ],
                    },
                    "ipv6": {"ipAddress": []},
                    "macAddress": "000D3A1B2C3D",
                }
            ]
        },
    }


def create_imds_app(
    config: LabConfig,
    tokens: TokenService,
    *,
    monotonic: Callable[[], float] = time.monotonic,
) -> Starlette:
    """The IMDS ASGI app; the rate limit comes from ``config.imds.rate_limit``."""
    imds = _Imds(config, tokens, RateLimiter(config.imds.rate_limit, monotonic=monotonic))
    return Starlette(
        routes=[
            Route("/metadata/identity/oauth2/token", imds.token, methods=ALL_METHODS),
            Route("/metadata/identity/info", imds.identity_info, methods=ALL_METHODS),
            Route("/metadata/versions", imds.versions, methods=ALL_METHODS),
            Route("/metadata/instance", imds.instance, methods=ALL_METHODS),
            Route("/metadata/instance/{path:path}", imds.instance, methods=ALL_METHODS),
            Route("/{path:path}", imds.not_found, methods=ALL_METHODS),
        ]
    )
