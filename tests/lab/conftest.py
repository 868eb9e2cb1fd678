"""Fixtures for the identity lab: configs, clocks, ASGI apps, and a lab on free loopback ports."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from examples.lab.appservice import create_app_service_app
from examples.lab.config import ImdsSettings, LabConfig, load_config
from examples.lab.imds import create_imds_app
from examples.lab.issuer import LabIssuer
from examples.lab.keys import KeyRing
from examples.lab.rbac import RoleAssignment
from examples.lab.runner import Lab, LabThread
from examples.lab.tokens import TokenService
from examples.vm_app_sdk import OTHER_FLOWS

from ..helpers import FakeClock

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
ADMIN_SECRET = "test-admin-secret"
IDENTITY_HEADER = "test-identity-header"


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
    issuer = LabIssuer(
        lab_config,
        keys,
        base_url="http://127.0.0.1:8700",
        clock=clock,
        admin_secret=ADMIN_SECRET,
    )
    tokens = TokenService(issuer)
    imds = create_imds_app(lab_config, tokens, monotonic=monotonic)
    app_service = create_app_service_app(
        lab_config, tokens, secret=IDENTITY_HEADER, monotonic=monotonic
    )

    def client(app: object, base: str) -> httpx.AsyncClient:
        return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=base)  # type: ignore[arg-type]

    async with (
        client(imds, "http://169.254.169.254") as imds_client,
        client(app_service, "http://127.0.0.1:8702") as app_service_client,
        client(issuer.app(), "http://127.0.0.1:8700") as metadata_client,
    ):
        yield Apps(
            issuer, tokens, clock, monotonic, imds_client, app_service_client, metadata_client
        )


@pytest.fixture(scope="module")
def running_lab(tmp_path_factory: pytest.TempPathFactory, roomy_config: LabConfig) -> Iterator[Lab]:
    """The whole lab (with the toy services when present) on free ports, in a thread."""
    state = tmp_path_factory.mktemp("lab")
    with LabThread(Lab(state, config=roomy_config, base_port=0, log=None)) as lab:
        yield lab
