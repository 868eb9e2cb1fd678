"""Result rows, the Markdown table, the JSON file and the machine description."""

from __future__ import annotations

import json
import math
import os
import platform
import ssl
import subprocess
from dataclasses import asdict, dataclass, field
from importlib.metadata import version
from pathlib import Path
from typing import Any, Literal

__all__ = ["Row", "machine_info", "render_markdown", "write_results"]

Bound = Literal[">=", "<=", "=="]


@dataclass
class Row:
    """One measured figure, its reference from the same run, and the issue's target.

    ``target`` bounds ``ratio = value / reference_value``; rows without a target are
    informational (``info``), the reference row itself says ``ref``.
    """

    case: str
    name: str
    value: float
    unit: str
    reference: str = ""
    reference_value: float | None = None
    bound: Bound | None = None
    target: float | None = None
    notes: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def ratio(self) -> float | None:
        """``value / reference_value``, or ``None`` without a reference."""
        if self.reference_value is None:
            return None
        if self.reference_value == 0:
            return math.inf if self.value else 1.0
        return self.value / self.reference_value

    @property
    def verdict(self) -> str:
        """``PASS``/``FAIL`` against the target; ``info`` or ``ref`` without one."""
        ratio = self.ratio
        if self.bound is None or self.target is None or ratio is None:
            return "ref" if self.reference_value is None else "info"
        passed = {
            ">=": ratio >= self.target,
            "<=": ratio <= self.target,
            "==": math.isclose(ratio, self.target),
        }[self.bound]
        return "PASS" if passed else "FAIL"

    def as_dict(self) -> dict[str, Any]:
        """The row for the JSON file, with ratio and verdict."""
        data = asdict(self)
        data["ratio"] = self.ratio
        data["verdict"] = self.verdict
        return data


def _number(value: float, unit: str) -> str:
    if unit in ("ms", "MB", "KB"):
        return f"{value:,.2f} {unit}"
    if unit == "B":
        return f"{value:,.0f} B"
    return f"{value:,.0f} {unit}"


def _cells(row: Row) -> list[str]:
    reference = (
        f"{row.reference} {_number(row.reference_value, row.unit)}"
        if row.reference_value is not None
        else row.reference or "-"
    )
    ratio = "-" if row.ratio is None else f"{row.ratio:.2f}x"
    target = "-" if row.bound is None else f"{row.bound} {row.target:g}x"
    return [
        row.case,
        row.name,
        _number(row.value, row.unit),
        reference,
        ratio,
        target,
        row.verdict,
        row.notes,
    ]


def render_markdown(rows: list[Row], machine: dict[str, str], settings: dict[str, Any]) -> str:
    """The results as a Markdown document: the table, then machine and settings."""
    head = ["#", "Case", "Measured", "Reference (same run)", "Ratio", "Target", "Result", "Notes"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(_cells(r)) + " |" for r in rows]
    failed = sum(r.verdict == "FAIL" for r in rows)
    passed = sum(r.verdict == "PASS" for r in rows)
    lines += ["", f"Targets: {passed} PASS, {failed} FAIL.", "", "Machine:", ""]
    lines += [f"- {k}: {v}" for k, v in machine.items()]
    lines += ["", "Settings: " + ", ".join(f"{k}={v}" for k, v in settings.items())]
    return "\n".join(lines) + "\n"


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _revision() -> str:
    """The commit measured, ``+dirty`` when ``src/`` has uncommitted changes."""
    root = Path(__file__).resolve().parent.parent
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "src"], cwd=root, capture_output=True, text=True
        ).stdout.strip()
    except OSError:
        return "unknown"
    return (head or "unknown") + ("+dirty" if dirty else "")


def machine_info() -> dict[str, str]:
    """What the figures were measured on."""
    from cryptography.hazmat.backends.openssl.backend import backend

    return {
        "tokenguard revision": _revision(),
        "CPU": _cpu_model(),
        "cores": str(os.cpu_count()),
        "OS": f"{platform.system()} {platform.release()}",
        "Python": f"{platform.python_implementation()} {platform.python_version()}",
        "OpenSSL (cryptography)": backend.openssl_version_text(),
        "OpenSSL (ssl module)": ssl.OPENSSL_VERSION,
        "packages": ", ".join(
            f"{name} {version(name)}"
            for name in (
                "tokenguard-asgi",
                "cryptography",
                "PyJWT",
                "starlette",
                "fastapi",
                "fastapi-azure-auth",
                "uvicorn",
                "h11",
            )
        ),
    }


def write_results(
    directory: Path,
    rows: list[Row],
    machine: dict[str, str],
    settings: dict[str, Any],
    seconds: float,
) -> str:
    """Write ``latest.md`` and ``latest.json`` into ``directory``; return the Markdown."""
    directory.mkdir(parents=True, exist_ok=True)
    markdown = render_markdown(rows, machine, settings)
    (directory / "latest.md").write_text(markdown)
    document = {
        "machine": machine,
        "settings": settings,
        "seconds": round(seconds, 1),
        "rows": [r.as_dict() for r in rows],
    }
    (directory / "latest.json").write_text(json.dumps(document, indent=2) + "\n")
    return markdown
