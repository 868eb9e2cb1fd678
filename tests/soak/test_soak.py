"""A short soak, so the long one (``make soak``) cannot rot unnoticed.

Eight seconds are too short for a meaningful memory figure, so RSS growth is left to
the long run; every other promise is checked.
"""

from __future__ import annotations

import pytest
from soak.runner import MIX, soak

pytestmark = [pytest.mark.anyio, pytest.mark.slow]


async def test_short_soak_keeps_every_promise() -> None:
    report = await soak(duration=8.0, concurrency=4, key_ttl=1)
    assert report.requests > 100
    assert {kind for kind, _ in report.by_kind} == set(MIX)
    assert report.invalid_accepted == 0
    assert report.server_errors == 0
    assert dict(report.unexpected) == {}
    assert dict(report.errors) == {}
    assert report.log_lines > 0
    assert report.log_leaks == 0
    assert [what for _, what in report.events][-1] == "end"
    assert report.rss_start > 0
    assert report.rss_end > 0
