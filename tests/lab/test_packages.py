"""The lab's layout: one package per area, each exporting its API from ``__init__``."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

LAB = Path(__file__).resolve().parents[2] / "examples" / "lab"
AREAS = ["identity", "resource", "keyvault", "blob", "runtime"]


@pytest.mark.parametrize("area", AREAS)
def test_each_area_exports_a_public_api_that_exists(area: str) -> None:
    package = importlib.import_module(f"examples.lab.{area}")
    names = list(package.__all__)  # ruff (RUF022) keeps it sorted
    assert names, area
    for name in names:
        assert not name.startswith("_"), f"{area}.{name}"
        assert hasattr(package, name), f"{area}.{name}"


def test_only_a_handful_of_modules_stay_flat() -> None:
    flat = sorted(p.name for p in LAB.glob("*.py"))
    assert flat == ["__init__.py", "__main__.py", "_files.py", "_http.py", "demo.py"]
    packages = sorted(p.parent.name for p in LAB.glob("*/__init__.py"))
    assert packages == sorted(AREAS)


def test_tests_mirror_the_areas() -> None:
    here = Path(__file__).resolve().parent
    assert sorted(p.parent.name for p in here.glob("*/__init__.py")) == sorted(AREAS)
