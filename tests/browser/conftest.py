"""The browser tests run only under ``make test-browser`` (it installs chromium and sets
``TOKENGUARD_BROWSER_TEST=1``); ``make test`` does not collect them (tests/conftest.py)."""

from __future__ import annotations

from collections.abc import Generator

import pytest

#: Set on a test whose call failed, so the browser fixture keeps a screenshot.
FAILED = pytest.StashKey[bool]()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if report.when == "call" and report.failed:
        item.stash[FAILED] = True
    return report
