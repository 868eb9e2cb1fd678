"""Fixtures for the identity lab: its config, a lab on free loopback ports, and the toy
Key Vault and Storage served alone (TLS, a LocalIssuer, test principals)."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from examples.lab import blob, keyvault
from examples.lab.identity import ImdsSettings, LabConfig, RoleAssignment
from examples.lab.runtime import Lab, LabThread, TlsFiles, ensure_tls, load_config
from examples.vm_app_sdk import OTHER_FLOWS
from starlette.applications import Starlette

from tokenguard.testing import LocalIssuer

from ._kit import (
    STORAGE,
    VAULT,
    Mint,
    Principals,
    mint_expired,
    mint_forged,
    serve_app,
    ssl_context,
)

#: Environment that steers azure-identity (and HTTP clients) elsewhere; tests unset it.
AZURE_ENV = (
    *OTHER_FLOWS,  # what the demo itself clears
    "AZURE_POD_IDENTITY_AUTHORITY_HOST",
    "AZURE_CLIENT_ID",
    "AZURE_TENANT_ID",
    "AZUREPS_HOST_ENVIRONMENT",
    "AZURE_AUTHORITY_HOST",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "ALL_PROXY",
    "http_proxy",
    "https_proxy",
    "all_proxy",
    "REQUESTS_CA_BUNDLE",
    "SSL_CERT_FILE",
)


@pytest.fixture(scope="session")
def lab_config() -> LabConfig:
    return load_config()


#: The container where ``roomy_config`` makes reader-id a contributor (and nowhere else).
SCOPED_CONTAINER = "scoped-box"


@pytest.fixture(scope="session")
def roomy_config(lab_config: LabConfig) -> LabConfig:
    """The default config with a rate limit no SDK test reaches (retries on 429 are slow),
    and reader-id a Storage Blob Data Contributor of one container only."""
    scoped = RoleAssignment(
        principal=lab_config.identity("reader-id").object_id,
        role="Storage Blob Data Contributor",
        scope=f"/storage/containers/{SCOPED_CONTAINER}",
    )
    return dataclasses.replace(
        lab_config,
        imds=ImdsSettings(rate_limit=10_000),
        role_assignments=(*lab_config.role_assignments, scoped),
    )


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No managed-identity flow or proxy selected by the environment."""
    for name in AZURE_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    return monkeypatch


@pytest.fixture(scope="module")
def running_lab(tmp_path_factory: pytest.TempPathFactory, roomy_config: LabConfig) -> Iterator[Lab]:
    """The whole lab (with the toy services when present) on free ports, in a thread."""
    state = tmp_path_factory.mktemp("lab")
    with LabThread(Lab(state, config=roomy_config, base_port=0, log=None)) as lab:
        yield lab


# -- the toy services alone -------------------------------------------------------

AUTHORITY = "http://127.0.0.1:8700"


@pytest.fixture(scope="session")
def tls(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    return ensure_tls(tmp_path_factory.mktemp("lab-tls"))


@pytest.fixture(scope="session")
def lab_issuer() -> LocalIssuer:
    """Mints only; never rotates (servers of several tests trust it)."""
    return LocalIssuer()


@pytest.fixture(scope="session")
def principals() -> Principals:
    return Principals()


@pytest.fixture(params=[mint_forged, mint_expired], ids=["forged", "expired"])
def bad_mint(request: pytest.FixtureRequest) -> Mint:
    """The tokens every toy service refuses with 401: forged, and expired."""
    mint: Mint = request.param
    return mint


@contextlib.contextmanager
def service_app(
    create_app: Callable[..., Starlette],
    audiences: list[str],
    issuer: LocalIssuer,
    principals: Principals,
    state_dir: Path,
    **options: Any,
) -> Iterator[Callable[[str], Starlette]]:
    """A toy service's app factory (``public_url`` -> app) trusting ``issuer`` with the
    principals' role assignments; its validator is closed on exit."""
    validator = issuer.validator(audiences=audiences, require_roles_or_scopes=False)

    def app_for(url: str) -> Starlette:
        return create_app(
            validator=validator,
            rbac=principals.rbac(),
            state_dir=state_dir,
            public_url=url,
            authority=AUTHORITY,
            tenant_id=issuer.tenant_id,
            **options,
        )

    try:
        yield app_for
    finally:
        asyncio.run(validator.aclose())


@contextlib.contextmanager
def _running(
    create_app: Callable[..., Starlette],
    audiences: list[str],
    issuer: LocalIssuer,
    principals: Principals,
    tls: TlsFiles,
    state_dir: Path,
    **options: Any,
) -> Iterator[str]:
    with (
        service_app(create_app, audiences, issuer, principals, state_dir, **options) as app_for,
        serve_app(app_for, tls) as url,
    ):
        yield url


def running_vault(
    issuer: LocalIssuer, principals: Principals, tls: TlsFiles, state_dir: Path, **options: Any
) -> contextlib.AbstractContextManager[str]:
    """A toy Key Vault on a free port; yields its URL."""
    return _running(keyvault.create_app, [VAULT], issuer, principals, tls, state_dir, **options)


def running_storage(
    issuer: LocalIssuer, principals: Principals, tls: TlsFiles, state_dir: Path, **options: Any
) -> contextlib.AbstractContextManager[str]:
    """A toy Blob Storage on a free port; yields its URL (add ``/{account}``)."""
    return _running(
        blob.create_app, [STORAGE + "/", STORAGE], issuer, principals, tls, state_dir, **options
    )


@pytest.fixture(scope="module")
def vault_url(
    lab_issuer: LocalIssuer,
    principals: Principals,
    tls: TlsFiles,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[str]:
    with running_vault(lab_issuer, principals, tls, tmp_path_factory.mktemp("vault")) as url:
        yield url


@pytest.fixture(scope="module")
def storage_url(
    lab_issuer: LocalIssuer,
    principals: Principals,
    tls: TlsFiles,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[str]:
    with running_storage(
        lab_issuer, principals, tls, tmp_path_factory.mktemp("storage"), max_upload_bytes=256 * 1024
    ) as url:
        yield url


@pytest.fixture
def https(tls: TlsFiles) -> Iterator[httpx.Client]:
    """A plain https client that trusts the lab CA."""
    with httpx.Client(verify=ssl_context(tls), timeout=30) as client:
        yield client


#: ``(url, challenge)`` -> the 401 answer to ``GET url`` without a token.
WithoutToken = Callable[[str, str], httpx.Response]


@pytest.fixture
def without_token(https: httpx.Client, lab_issuer: LocalIssuer) -> WithoutToken:
    """``GET url`` with no token: 401 carrying exactly ``challenge`` (the service's own
    ``WWW-Authenticate``, ``{authority}`` in it standing for the lab tenant's authority);
    the response, for the service's own checks."""
    authority = f"{AUTHORITY}/{lab_issuer.tenant_id}"

    def get(url: str, challenge: str) -> httpx.Response:
        response = https.get(url)
        assert response.status_code == 401
        assert response.headers["www-authenticate"] == challenge.format(authority=authority)
        return response

    return get
