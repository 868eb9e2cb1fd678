"""Long fuzz run: ``python -m fuzz [--examples N]`` (``make fuzz``).

Runs every property of :mod:`fuzz.harness` with a large hypothesis budget, then
the linear-work checks with both call counts and CPU time (best of several runs, so a
noisy machine can only make the ratio look worse, never better). Prints Markdown
tables (SECURITY.md carries the latest) and exits non-zero if anything was found.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from collections.abc import Callable

import hypothesis

from .harness import COUNTS, FAMILIES, Harness, build_properties, python_calls, run_family

SMALL = 20_000
LARGE = 10 * SMALL
#: Ten times the input may cost at most this many times the CPU time.
MAX_TIME_RATIO = 30.0


def best_time(function: Callable[[], object], repeat: int = 7, number: int = 20) -> float:
    """The best of ``repeat`` runs of ``number`` calls, in CPU seconds per call."""
    best = float("inf")
    for _ in range(repeat):
        started = time.process_time()
        for _ in range(number):
            function()
        best = min(best, (time.process_time() - started) / number)
    return best


def run_properties(examples: int) -> list[str]:
    findings: list[str] = []
    harness = Harness()
    properties = build_properties(harness, examples)
    print("| property | examples run | seconds | found |\n|---|---|---|---|")
    try:
        for name, prop in properties.items():
            started = time.perf_counter()
            found = "nothing"
            try:
                prop()
            except Exception as exc:  # report every property, then fail at the end
                found = f"{type(exc).__name__}: {str(exc).splitlines()[0][:120]}"
                findings.append(f"{name}: {exc}")
            seconds = time.perf_counter() - started
            print(f"| `{name}` | {COUNTS[name]} | {seconds:.0f} | {found} |", flush=True)
    finally:
        harness.close()
    return findings


def run_linearity() -> list[str]:
    findings: list[str] = []
    harness = Harness(max_token_bytes=4 * LARGE)
    print(
        f"\n| input family | calls at {SMALL} | calls at {LARGE} | call ratio "
        "| CPU time ratio | verdict |\n|---|---|---|---|---|---|"
    )
    try:
        for family in sorted(FAMILIES):
            small = run_family(harness, family, SMALL)
            large = run_family(harness, family, LARGE)
            small(), large()
            calls_small, calls_large = python_calls(small), python_calls(large)
            ratio = best_time(large) / max(best_time(small), 1e-9)
            linear = calls_large <= 10 * calls_small + 200 and ratio < MAX_TIME_RATIO
            verdict = "linear" if linear else "SUPER-LINEAR"
            if not linear:
                findings.append(f"{family}: calls {calls_small}->{calls_large}, time x{ratio:.1f}")
            print(
                f"| `{family}` | {calls_small} | {calls_large} "
                f"| {calls_large / calls_small:.2f} | {ratio:.1f} | {verdict} |",
                flush=True,
            )
    finally:
        harness.close()
    return findings


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m fuzz", description=__doc__)
    parser.add_argument("--examples", type=int, default=10_000, help="examples per property")
    args = parser.parse_args()
    started = time.perf_counter()
    print(
        f"tokenguard fuzz run: {args.examples} examples per property, "
        f"hypothesis {hypothesis.__version__}, Python {platform.python_version()}, "
        f"{os.cpu_count()} CPUs\n",
        flush=True,
    )
    findings = run_properties(args.examples)
    findings += run_linearity()
    total = sum(COUNTS.values())
    minutes = (time.perf_counter() - started) / 60
    print(f"\n{total} examples in {minutes:.1f} min; findings: {len(findings)}")
    for finding in findings:
        print(" -", finding)
    return 1 if findings else 0


if __name__ == "__main__":
    sys.exit(main())
