"""Shared fixtures: keys are generated once per session; each test builds its own app."""

from __future__ import annotations

import pytest

from tokenguard.testing import LocalIssuer

VAULT = "https://vault.azure.net"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="session")
def session_issuer() -> LocalIssuer:
    """One RSA issuer for tests that only mint (never rotate or retire keys)."""
    return LocalIssuer()


@pytest.fixture
def issuer() -> LocalIssuer:
    """A fresh issuer (new tenant, new key) for tests that change keys."""
    return LocalIssuer()
