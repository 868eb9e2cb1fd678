"""One attack kit per session: key generation is the slow part."""

from __future__ import annotations

import pytest

from .kit import Kit


@pytest.fixture(scope="session")
def kit() -> Kit:
    """Trusted issuers, attacker keys and a recording transport."""
    return Kit()
