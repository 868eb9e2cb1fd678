"""Test kit for the toy services: a TLS server thread, a credential double, principals."""

from __future__ import annotations

import contextlib
import gc
import socket
import ssl
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, cast

import pytest
import uvicorn
from azure.core.credentials import AccessToken, AccessTokenInfo, TokenRequestOptions
from azure.core.exceptions import ClientAuthenticationError, HttpResponseError
from azure.core.rest import HttpResponse
from azure.keyvault.secrets import SecretClient
from azure.storage.blob import BlobServiceClient
from examples.lab.identity import RoleAssignment, RoleAssignments
from examples.lab.runtime import TlsFiles
from starlette.types import ASGIApp

from tokenguard.testing import LocalIssuer

STORAGE = "https://storage.azure.com"
VAULT = "https://vault.azure.net"


@dataclass(frozen=True)
class Principals:
    """Object ids of the test identities and the role assignments they hold."""

    vault_officer: str = field(default_factory=lambda: str(uuid.uuid4()))
    vault_user: str = field(default_factory=lambda: str(uuid.uuid4()))
    storage_contributor: str = field(default_factory=lambda: str(uuid.uuid4()))
    storage_reader: str = field(default_factory=lambda: str(uuid.uuid4()))
    #: Contributor on the container "scoped" only.
    scoped_contributor: str = field(default_factory=lambda: str(uuid.uuid4()))
    nobody: str = field(default_factory=lambda: str(uuid.uuid4()))

    def rbac(self) -> RoleAssignments:
        return RoleAssignments(
            [
                RoleAssignment(self.vault_officer, "Key Vault Secrets Officer", "/keyvault"),
                RoleAssignment(self.vault_user, "Key Vault Secrets User", "/keyvault"),
                RoleAssignment(self.storage_contributor, "Storage Blob Data Contributor", "/"),
                RoleAssignment(self.storage_reader, "Storage Blob Data Reader", "/storage"),
                RoleAssignment(
                    self.scoped_contributor,
                    "Storage Blob Data Contributor",
                    "/storage/containers/scoped",
                ),
            ]
        )


Mint = Callable[[LocalIssuer, str, str], str]


def mint_valid(issuer: LocalIssuer, audience: str, object_id: str) -> str:
    """A good managed-identity token for ``audience``."""
    return issuer.mint(
        audience,
        object_id=object_id,
        mi_resource_id=(
            "/subscriptions/00000000-0000-0000-0000-000000000000/resourcegroups/lab/providers/"
            "Microsoft.ManagedIdentity/userAssignedIdentities/test-identity"
        ),
    )


def mint_forged(issuer: LocalIssuer, audience: str, object_id: str) -> str:
    """Signed by a key the issuer never published."""
    return issuer.forge(audience, object_id=object_id)


def mint_expired(issuer: LocalIssuer, audience: str, object_id: str) -> str:
    """Expired an hour ago (well beyond the leeway)."""
    return issuer.mint(audience, object_id=object_id, issued_at=time.time() - 7200)


class LabCredential:
    """A ``TokenCredential`` (with ``get_token_info``) handing out tokens of a LocalIssuer.

    Records every scope and tenant asked for, so tests can check the challenge flow.
    """

    def __init__(self, issuer: LocalIssuer, object_id: str, mint: Mint = mint_valid) -> None:
        self.issuer = issuer
        self.object_id = object_id
        self.mint = mint
        self.requests: list[tuple[tuple[str, ...], str | None]] = []

    def _token(self, scopes: tuple[str, ...], tenant_id: str | None) -> tuple[str, int]:
        self.requests.append((scopes, tenant_id))
        (scope,) = scopes
        audience = scope.removesuffix("/.default")
        return self.mint(self.issuer, audience, self.object_id), int(time.time()) + 3600

    def get_token(
        self,
        *scopes: str,
        claims: str | None = None,
        tenant_id: str | None = None,
        enable_cae: bool = False,
        **kwargs: Any,
    ) -> AccessToken:
        token, expires = self._token(scopes, tenant_id)
        return AccessToken(token, expires)

    def get_token_info(
        self, *scopes: str, options: TokenRequestOptions | None = None
    ) -> AccessTokenInfo:
        token, expires = self._token(scopes, (options or {}).get("tenant_id"))
        return AccessTokenInfo(token, expires)


@contextlib.contextmanager
def serve_app(factory: Callable[[str], ASGIApp], tls: TlsFiles | None) -> Iterator[str]:
    """Serve ``factory(url)`` (lifespan on) on a free 127.0.0.1 port in a thread.

    https with the lab certificate when ``tls`` is given, else plain http.
    """
    # IPPROTO_TCP explicitly: asyncio sets TCP_NODELAY on accepted sockets only when the
    # listening socket says TCP; with proto 0 every response with a body stalls ~40 ms
    # (Nagle against delayed ACK).
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.bind(("127.0.0.1", 0))
    url = f"{'https' if tls else 'http'}://127.0.0.1:{sock.getsockname()[1]}"
    config = uvicorn.Config(
        factory(url),
        log_level="warning",
        lifespan="on",
        http="h11",
        ws="none",
        ssl_certfile=str(tls.server_cert) if tls else None,
        ssl_keyfile=str(tls.server_key) if tls else None,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("server did not start")
        time.sleep(0.01)
    try:
        yield url
    finally:
        # SDK error responses sit in reference cycles (exception -> traceback) that keep
        # their keep-alive connection open; uvicorn's shutdown waits for every connection.
        gc.collect()
        server.should_exit = True
        thread.join(timeout=20)
        sock.close()


def vault_client(url: str, tls: TlsFiles, credential: LabCredential) -> SecretClient:
    """An SDK client of the toy Key Vault at ``url`` (no retries: tests see each answer)."""
    return SecretClient(
        url,
        credential,
        verify_challenge_resource=False,
        connection_verify=str(tls.ca_cert),
        retry_total=0,
    )


def storage_client(account_url: str, tls: TlsFiles, credential: LabCredential) -> BlobServiceClient:
    """An SDK client of the toy Storage account at ``account_url`` (no retries)."""
    return BlobServiceClient(
        account_url, credential=credential, connection_verify=str(tls.ca_cert), retry_total=0
    )


def response_of(exc: HttpResponseError) -> HttpResponse:
    """The HTTP response behind an SDK error (always present for a service answer)."""
    assert exc.response is not None
    return cast(HttpResponse, exc.response)


def error_code(exc: HttpResponseError) -> str | None:
    """Storage's ``x-ms-error-code`` as the storage SDK attaches it to its errors."""
    code = getattr(exc, "error_code", None)
    return None if code is None else str(code.value if hasattr(code, "value") else code)


def refused_with_401(call: Callable[[], object]) -> HttpResponse:
    """``call()`` (an SDK call with a bad token) is refused with 401; the response."""
    with pytest.raises(ClientAuthenticationError) as refused:
        call()
    assert refused.value.status_code == 401
    return response_of(refused.value)


def refused_naming_the_caller(call: Callable[[Callable[[Any], None]], object], oid: str) -> None:
    """``call(hook)`` (an SDK call given ``raw_response_hook=hook``) is refused with 403, and
    the service still names the caller it saw, ``oid``, in ``x-ms-lab-caller``."""
    seen: list[Any] = []
    with pytest.raises(HttpResponseError) as refused:
        call(seen.append)
    assert refused.value.status_code == 403
    assert f"oid={oid}" in seen[-1].http_response.headers["x-ms-lab-caller"]


def ssl_context(tls: TlsFiles) -> ssl.SSLContext:
    """A client context trusting only the lab CA."""
    return ssl.create_default_context(cafile=str(tls.ca_cert))
