"""examples/quickstart.py answers as its table says (it is the smallest end-to-end use)."""

from __future__ import annotations

import pytest
from examples import quickstart


@pytest.mark.anyio
async def test_quickstart_table(capsys: pytest.CaptureFixture[str]) -> None:
    assert await quickstart.main() == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0].split() == ["case", "status", "answer"]
    assert "valid managed-identity token   200" in out
    assert 'error_description="The token is expired"' in out
    assert 'error_description="The token signature is invalid"' in out
    assert 'error_description="The token audience is not accepted"' in out
    assert "eyJ" not in out  # no token is ever printed
