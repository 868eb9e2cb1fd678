"""Case 9: memory of the verified-token cache, each fill in a fresh process."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

from ._context import Bench
from ._measure import progress
from ._report import Row

__all__ = ["run"]

_ROOT = Path(__file__).resolve().parent.parent
_DEFAULT_SIZE = 10_000  # tokenguard's default cache size, the one the target is about
_BUDGET_MB = 40.0


async def _measure(size: int, trace: bool) -> dict[str, Any]:
    args = [sys.executable, "-m", "bench._memory", str(size)] + (["--trace"] if trace else [])
    proc = await asyncio.create_subprocess_exec(*args, cwd=_ROOT, stdout=asyncio.subprocess.PIPE)
    out, _ = await proc.communicate()
    if proc.returncode:
        raise RuntimeError(f"bench._memory {size} failed ({proc.returncode})")
    result: dict[str, Any] = json.loads(out)
    return result


async def run(bench: Bench) -> list[Row]:
    """``tracemalloc`` for the first size (the target), RSS growth for every size."""
    sizes = bench.settings.memory_sizes
    progress(f"case 9: tracemalloc, {sizes[0]} entries")
    traced = await _measure(sizes[0], trace=True)
    per_entry = traced["bytes"] / sizes[0]
    projected = "" if sizes[0] == _DEFAULT_SIZE else f" (projected from {sizes[0]} entries)"
    rows = [
        Row(
            "9a",
            f"Cache of {_DEFAULT_SIZE:,} entries (the default), tracemalloc{projected}",
            per_entry * _DEFAULT_SIZE / 1e6,
            "MB",
            "budget",
            _BUDGET_MB,
            "<=",
            1.0,
            f"{per_entry / 1024:.2f} KB per entry, {traced['alg']} tokens",
            {"bytes_per_entry": per_entry, "entries": sizes[0]},
        )
    ]
    for index, size in enumerate(sizes):
        progress(f"case 9: RSS growth, {size} entries")
        grown = await _measure(size, trace=False)
        rows.append(
            Row(
                f"9{chr(ord('b') + index)}",
                f"Cache of {size:,} entries: process RSS growth",
                grown["bytes"] / 1e6,
                "MB",
                "tracemalloc x entries",
                per_entry * size / 1e6,
                notes=f"{grown['bytes'] / size / 1024:.2f} KB per entry, {grown['alg']} tokens",
                extra={"bytes_per_entry": grown["bytes"] / size, "entries": size},
            )
        )
    return rows
