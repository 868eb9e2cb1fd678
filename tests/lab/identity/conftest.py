"""Fixtures for the identity endpoints: the issuer, IMDS and App Service apps in process."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from examples.lab.identity import IdentityEndpoints, KeyRing, LabConfig, LabIssuer, TokenService

from ...helpers import FakeClock

ADMIN_SECRET = "test-admin-secret"
IDENTITY_HEADER = "test-identity-header"


@dataclass
class Apps:
    """The issuer, IMDS and App Service apps of one lab, in process (no sockets)."""

    issuer: LabIssuer
    tokens: TokenService
    clock: FakeClock
    monotonic: FakeClock
    imds: httpx.AsyncClient
    app_service: httpx.AsyncClient
    metadata: httpx.AsyncClient


@pytest.fixture(scope="session")
def key_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One signing key made once; tests copy it rather than generate RSA keys each time."""
    path = tmp_path_factory.mktemp("keys")
    KeyRing(path)
    return path


def copy_keys(source: Path, target: Path) -> Path:
    target.mkdir(parents=True)
    for item in source.iterdir():
        (target / item.name).write_bytes(item.read_bytes())
        (target / item.name).chmod(item.stat().st_mode)
    return target


@pytest.fixture
async def apps(lab_config: LabConfig, key_dir: Path, tmp_path: Path) -> AsyncIterator[Apps]:
    clock, monotonic = FakeClock(time.time()), FakeClock(1000.0)
    keys = KeyRing(copy_keys(key_dir, tmp_path / "keys"), clock=clock)
    lab = IdentityEndpoints.create(
        lab_config,
        keys,
        base_url="http://127.0.0.1:8700",
        admin_secret=ADMIN_SECRET,
        identity_header=IDENTITY_HEADER,
        clock=clock,
        monotonic=monotonic,
    )

    def client(app: object, base: str) -> httpx.AsyncClient:
        return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=base)  # type: ignore[arg-type]

    async with (
        client(lab.imds, "http://169.254.169.254") as imds_client,
        client(lab.app_service, "http://127.0.0.1:8702") as app_service_client,
        client(lab.issuer_app, "http://127.0.0.1:8700") as metadata_client,
    ):
        yield Apps(
            lab.issuer,
            lab.tokens,
            clock,
            monotonic,
            imds_client,
            app_service_client,
            metadata_client,
        )
