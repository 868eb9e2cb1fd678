"""``python -m bench._memory SIZE [--trace]``: fill a verified-token cache of ``SIZE``
entries in a fresh process and print its memory cost as JSON.

A fresh process keeps other cases' freed memory from hiding the growth. The tokens are
ES256 (an entry does not depend on the algorithm, and ES256 signs 10x faster than a
2048-bit RSA key, which matters for 100 000 tokens); they are minted before measuring.
``--trace`` measures with ``tracemalloc`` (bytes the cache holds) instead of RSS
(bytes the process gained), since tracing inflates RSS.
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import sys
import time
import tracemalloc
from collections.abc import Sequence
from pathlib import Path

from tokenguard.testing import LocalIssuer

from ._tokens import AUDIENCE, mint_many

__all__ = ["main"]


def _rss() -> int:
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE")


async def _fill(size: int, trace: bool) -> dict[str, float]:
    issuer = LocalIssuer(key_type="EC")
    tokens = mint_many(issuer, size)
    async with issuer.validator(AUDIENCE, cache_size=size) as validator:
        await validator.warm_up()
        await validator.validate(tokens[0])  # first-use allocations are not per entry
        validator.cache.clear()
        gc.collect()
        if trace:
            tracemalloc.start()
        before = tracemalloc.get_traced_memory()[0] if trace else _rss()
        started = time.perf_counter()
        for token in tokens:
            await validator.validate(token)
        seconds = time.perf_counter() - started
        gc.collect()
        after = tracemalloc.get_traced_memory()[0] if trace else _rss()
        if len(validator.cache) != size:
            raise AssertionError(f"cache holds {len(validator.cache)} entries, not {size}")
    return {"entries": size, "bytes": after - before, "seconds": seconds}


def main(argv: Sequence[str]) -> None:
    """Print ``{"entries", "bytes", "seconds"}`` for one cache fill."""
    size = int(argv[0])
    print(json.dumps(asyncio.run(_fill(size, "--trace" in argv))))


if __name__ == "__main__":
    main(sys.argv[1:])
