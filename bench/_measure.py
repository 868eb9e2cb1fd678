"""Timing helpers: interleaved rounds, best round wins; percentiles; progress on stderr.

The VM is noisy, so every subject of a comparison runs once per round, in
alternating order, and each keeps its best (fastest) round: noise only ever slows
a round down, so the best round is the closest to the true cost.
"""

from __future__ import annotations

import gc
import inspect
import math
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

__all__ = ["Subject", "best_rates", "percentile", "progress"]

_STARTED = time.perf_counter()


def progress(message: str) -> None:
    """One progress line on stderr, stamped with the seconds since start."""
    print(f"[{time.perf_counter() - _STARTED:6.1f}s] {message}", file=sys.stderr, flush=True)


@dataclass
class Subject:
    """One thing to time: ``batch`` performs ``ops`` operations (sync or async)."""

    name: str
    batch: Callable[[], Awaitable[None] | None]
    ops: int
    #: Runs before every round, untimed (e.g. empty a cache so it never hits).
    setup: Callable[[], None] | None = None


async def best_rates(subjects: Sequence[Subject], rounds: int) -> dict[str, float]:
    """Operations per second of each subject's best round; rounds interleave subjects."""
    best = {s.name: math.inf for s in subjects}
    for index in range(rounds):
        # Alternate the order so that no subject always runs right after another.
        order = subjects if index % 2 == 0 else list(reversed(subjects))
        for subject in order:
            if subject.setup is not None:
                subject.setup()
            gc.collect()  # garbage of the previous subject is not billed to this one
            started = time.perf_counter()
            outcome = subject.batch()
            if inspect.isawaitable(outcome):
                await outcome
            elapsed = time.perf_counter() - started
            best[subject.name] = min(best[subject.name], elapsed)
    return {s.name: s.ops / best[s.name] for s in subjects}


def percentile(values: Sequence[float], fraction: float) -> float:
    """The nearest-rank percentile (``fraction`` in 0..1) of non-empty ``values``."""
    if not values:
        raise ValueError("no values")
    ordered = sorted(values)
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]
