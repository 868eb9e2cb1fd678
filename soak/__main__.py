"""``python -m soak [--duration S] [--concurrency N] [--max-stale S] [--resources S]``.

``make soak`` runs it. First the protected app under mixed traffic (:mod:`.runner`),
then the lab's toy Key Vault and Storage under SDK clients (:mod:`.resources`).
Prints the reports as Markdown (SECURITY.md carries the latest) and exits non-zero if
an invalid request was accepted, a 5xx appeared (unless ``--max-stale`` is shorter than
the outage, which makes a 503 window expected), an answer was unexpected, the app's RSS
grew by 10 % or more, a log line held a token, a refused identity's operation succeeded
or an acknowledged write was lost.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import sys

from .resources import resource_soak
from .runner import soak


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m soak", description=__doc__)
    parser.add_argument("--duration", type=float, default=150.0, help="seconds (default 150)")
    parser.add_argument("--concurrency", type=int, default=8, help="client connections")
    parser.add_argument(
        "--max-stale",
        type=float,
        default=3600.0,
        help="the app's max_stale; below 15%% of the duration the outage yields 503s",
    )
    parser.add_argument(
        "--resources",
        type=float,
        default=30.0,
        help="seconds of the toy Key Vault / Storage part (0 skips it; default 30)",
    )
    args = parser.parse_args()
    print(
        f"tokenguard soak: {args.duration:.0f} s, {args.concurrency} connections, "
        f"Python {platform.python_version()}, {os.cpu_count()} CPUs, loopback only\n",
        flush=True,
    )
    report = asyncio.run(soak(args.duration, args.concurrency, args.max_stale))
    print(report.table())
    allow_503 = args.max_stale < 0.15 * args.duration
    failures = report.failures(allow_503=allow_503)
    if args.resources > 0:
        print("\n## Toy Key Vault and Storage under concurrent SDK clients\n", flush=True)
        resources = resource_soak(args.resources)
        print(resources.table())
        failures += resources.failures()
    print("\nresult:", "PASS" if not failures else "FAIL")
    for failure in failures:
        print(" -", failure)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
