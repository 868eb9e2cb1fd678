"""Fixtures for the toy Key Vault and Storage: TLS, an issuer, principals, running servers."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from examples.lab import blob, keyvault
from examples.lab.tls import TlsFiles, ensure_tls
from starlette.applications import Starlette

from tokenguard.testing import LocalIssuer

from ._kit import STORAGE, VAULT, Principals, serve_app, ssl_context

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
