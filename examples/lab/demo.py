"""What the two demo scripts share: where the lab runs, checked steps, and token display.

``examples/vm_app.py`` (plain httpx) and ``examples/vm_app_sdk.py`` (the Azure SDKs) walk
the same flow; each step records what was expected and what came back, and the final
table decides the exit code. Tokens are never printed: only a fingerprint and the
decoded (unverified) header and claims.

Both teach the same two kinds of permission: a token for Key Vault or Storage carries no
``roles`` (those services look the caller's ``oid`` up in their RBAC role assignments),
and a token for your own API carries the app roles assigned to the caller (:data:`MODEL`).
"""

from __future__ import annotations

import json
import os
import socket
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import jwt

from tokenguard import fingerprint

from .identity import LabConfig
from .runtime import DEFAULT_PORT, config_from_env, port_from_env

__all__ = ["MODEL", "Report", "bearer", "describe_token", "lab_location", "roles_in"]

VAULT: Final = "https://vault.azure.net"
STORAGE: Final = "https://storage.azure.com/"
#: How the lab hands out permissions, as the demos explain it.
MODEL: Final = (
    "Azure resources (Key Vault, Storage): the token carries NO roles; the service looks",
    "  the caller's oid up in its RBAC role assignments (examples/lab/default.toml).",
    "Your own API: the token carries the app roles assigned to the caller, and the API",
    "  checks them (examples/fastapi_service.py: guard.requires(roles=[...])).",
)
#: Claims shown in the order a reader wants them (the rest follow).
_FIRST_CLAIMS: Final = ("aud", "iss", "oid", "sub", "appid", "idtyp", "xms_mirid", "roles")


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


@contextmanager
def lab_location() -> Iterator[tuple[Path, int, LabConfig]]:
    """(state dir, base port, config) for the demo's own lab.

    ``LAB_DIR`` if set, else a fresh temporary directory (removed afterwards). ``LAB_PORT``
    if set; else 8700, or any free ports when 8700..8704 are taken (``make lab`` running).
    ``LAB_CONFIG`` if set, else ``examples/lab/default.toml``.
    """
    port = port_from_env()
    if port is None:
        if all(_port_free(DEFAULT_PORT + i) for i in range(5)):
            port = DEFAULT_PORT
        else:
            print(f"ports {DEFAULT_PORT}..{DEFAULT_PORT + 4} are taken: using free ports instead")
            port = 0
    config = config_from_env()
    state = os.environ.get("LAB_DIR")
    if state:
        yield Path(state), port, config
        return
    with tempfile.TemporaryDirectory(prefix="tokenguard-lab-") as tmp:
        yield Path(tmp), port, config


def describe_token(token: str) -> list[str]:
    """Lines showing a token's header and claims, decoded WITHOUT verification."""
    header = jwt.get_unverified_header(token)
    claims: dict[str, Any] = jwt.decode(token, options={"verify_signature": False})
    lines = [
        f"token: not shown (sha256 fingerprint {fingerprint(token)}), {len(token)} characters",
        "decoded, NOT verified (the resource verifies it):",
        f"  header  {json.dumps(header)}",
    ]
    names = [n for n in _FIRST_CLAIMS if n in claims] + [
        n for n in claims if n not in _FIRST_CLAIMS
    ]
    width = max(len(n) for n in names)
    for name in names:
        value = claims[name]
        lines.append(f"  {name:<{width}}  {value if isinstance(value, str) else json.dumps(value)}")
    return lines


def bearer(token: str) -> dict[str, str]:
    """The Authorization header carrying ``token``."""
    return {"Authorization": f"Bearer {token}"}


def roles_in(token: str) -> str:
    """The ``roles`` claim of ``token`` (decoded WITHOUT verification), or ``none``."""
    claims: dict[str, Any] = jwt.decode(token, options={"verify_signature": False})
    roles = claims.get("roles")
    return " ".join(roles) if isinstance(roles, list) and roles else "none"


@dataclass
class Step:
    """One checked step of the walk-through."""

    name: str
    expected: str
    got: str
    ok: bool


@dataclass
class Report:
    """The steps so far; prints each as it happens and the table at the end."""

    steps: list[Step] = field(default_factory=list)

    def section(self, title: str) -> None:
        """A heading for the next steps."""
        print(f"\n== {title} ==", flush=True)

    def say(self, *lines: str) -> None:
        """Detail lines, indented."""
        for line in lines:
            print(f"   {line}", flush=True)

    def check(self, name: str, expected: str, got: str, ok: bool | None = None) -> bool:
        """Record a step; ``ok`` defaults to ``got == expected``."""
        ok = got == expected if ok is None else ok
        self.steps.append(Step(name, expected, got, ok))
        print(f" {'ok ' if ok else 'BAD'} {name}: expected {expected}, got {got}", flush=True)
        return ok

    @property
    def ok(self) -> bool:
        """Whether every step answered as expected (and there was at least one)."""
        return bool(self.steps) and all(step.ok for step in self.steps)

    def finish(self) -> int:
        """Print the summary table; the exit code: 0 when every step answered as expected."""
        print("\n== Summary ==")
        print(self.table())
        print(
            "\nall steps answered as expected"
            if self.ok
            else "\nSOME STEPS DID NOT ANSWER AS EXPECTED"
        )
        return 0 if self.ok else 1

    def table(self) -> str:
        """The final table."""
        rows = [("step", "expected", "got", "")]
        rows += [(s.name, s.expected, s.got, "ok" if s.ok else "UNEXPECTED") for s in self.steps]
        widths = [max(len(row[i]) for row in rows) for i in range(3)]
        return "\n".join(
            f"  {r[0]:<{widths[0]}}  {r[1]:<{widths[1]}}  {r[2]:<{widths[2]}}  {r[3]}".rstrip()
            for r in rows
        )
