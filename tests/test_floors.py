"""The declared dependency floors are the versions ``make test-lowest`` pins and tests."""

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _release(version: str) -> tuple[int, ...]:
    parts = [int(part) for part in version.split(".")]
    while parts and parts[-1] == 0:
        parts.pop()  # 2.10 and 2.10.0 are one version
    return tuple(parts)


def _name(requirement: str) -> str:
    return re.sub(r"[-_.]+", "-", requirement).lower()


def declared_floors() -> dict[str, tuple[int, ...]]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    requirements = list(project["dependencies"])
    for extra in project["optional-dependencies"].values():
        requirements += extra
    floors = {}
    for requirement in requirements:
        match = re.fullmatch(r"([A-Za-z0-9._-]+)(?:\[[^\]]*\])?>=([0-9.]+)", requirement)
        assert match, f"{requirement!r}: every dependency needs a plain >= floor"
        floors[_name(match[1])] = _release(match[2])
    return floors


def pinned_floors() -> dict[str, tuple[int, ...]]:
    pins = {}
    for line in (ROOT / "constraints" / "lowest.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, _, version = line.partition("==")
            pins[_name(name)] = _release(version)
    return pins


def test_lowest_constraints_pin_exactly_the_declared_floors() -> None:
    floors = declared_floors()
    assert {"pyjwt", "cryptography", "httpx", "starlette", "anyio", "fastapi"} <= set(floors)
    assert pinned_floors() == floors
