"""Shared fixtures: keys are generated once per session; each test builds its own app."""

from __future__ import annotations

import os

import pytest

from tokenguard.testing import LocalIssuer

VAULT = "https://vault.azure.net"

#: The real-browser tests drive chromium: ``make test-browser`` installs it, sets the
#: variable and runs them; elsewhere they are not collected (not skipped: not run).
collect_ignore = [] if os.environ.get("TOKENGUARD_BROWSER_TEST") == "1" else ["browser"]


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
