"""``python -m bench``: run the benchmark suite, print the table, write ``bench/results/``."""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace
from pathlib import Path

from . import case_asgi, case_http, case_jose, case_keys, case_memory
from ._context import QUICK, Bench, Settings
from ._measure import progress
from ._report import Row, machine_info, write_results

__all__ = ["GROUPS", "main", "run_suite"]

#: Case groups in run order; each measures its cases against references of its own run.
GROUPS: dict[str, tuple[str, Callable[[Bench], Awaitable[list[Row]]]]] = {
    "jose": ("cases 1-5: signature floor, PyJWT, validate", case_jose.run),
    "asgi": ("case 6: routes called in process", case_asgi.run),
    "http": ("case 7: uvicorn on loopback", case_http.run),
    "keys": ("case 8: key fetches under load", case_keys.run),
    "memory": ("case 9: verified-token cache memory", case_memory.run),
}
_CASE_GROUP = {"1": "jose", "2": "jose", "3": "jose", "4": "jose", "5": "jose"}
_CASE_GROUP |= {"6": "asgi", "7": "http", "8": "keys", "9": "memory"}


async def run_suite(settings: Settings, groups: Sequence[str]) -> list[Row]:
    """Run the chosen groups in order; returns every row."""
    rows: list[Row] = []
    async with Bench(settings) as bench:
        for name in groups:
            progress(f"== {GROUPS[name][0]}")
            rows += await GROUPS[name][1](bench)
    return rows


def _groups(only: list[str] | None) -> list[str]:
    if not only:
        return list(GROUPS)
    chosen = {_CASE_GROUP.get(o, o) for o in only}
    unknown = chosen - GROUPS.keys()
    if unknown:
        raise SystemExit(f"unknown case(s): {', '.join(sorted(unknown))}")
    return [g for g in GROUPS if g in chosen]


def main(argv: Sequence[str] | None = None) -> int:
    """Parse options, run, print the Markdown table; exit 1 when a target fails."""
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="tiny counts (smoke test)")
    parser.add_argument(
        "--only",
        action="append",
        metavar="CASE",
        help="run only this case (1-9) or group (" + ", ".join(GROUPS) + "); repeatable",
    )
    parser.add_argument("--rounds", type=int, help="rounds of the in-process cases")
    parser.add_argument("--tokens", type=int, help="unique tokens per algorithm")
    parser.add_argument(
        "--out", type=Path, default=Path(__file__).parent / "results", help="results directory"
    )
    args = parser.parse_args(argv)
    settings = QUICK if args.quick else Settings()
    if args.rounds:
        settings = replace(settings, rounds=args.rounds)
    if args.tokens:
        settings = replace(settings, tokens=args.tokens)
    groups = _groups(args.only)
    started = time.perf_counter()
    rows = asyncio.run(run_suite(settings, groups))
    seconds = time.perf_counter() - started
    markdown = write_results(args.out, rows, machine_info(), settings.as_dict(), seconds)
    print(markdown)
    progress(f"done in {seconds:.0f} s; wrote {args.out}/latest.md and latest.json")
    return 1 if any(r.verdict == "FAIL" for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
