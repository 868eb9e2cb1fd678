"""``python -m bench._memory SIZE [--trace]``: fill a verified-token cache of ``SIZE``
entries in a fresh process and print its memory cost as JSON.

A fresh process keeps other cases' freed memory from hiding the growth. An entry holds
the token's bytes, so the tokens are the RS256 ones of every other case up to 20 000
entries; beyond that they are ES256 (86-byte signatures instead of 342, so ~250 bytes
less per entry), because minting 100 000 tokens with a 2048-bit RSA key takes minutes.
They are minted before measuring.
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

_RSA_UP_TO = 20_000


def _rss() -> int:
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE")


async def _fill(size: int, trace: bool) -> dict[str, float | str]:
    rsa = size <= _RSA_UP_TO
    issuer = LocalIssuer(key_type="RSA" if rsa else "EC")
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
    alg = "RS256" if rsa else "ES256"
    return {"entries": size, "bytes": after - before, "seconds": seconds, "alg": alg}


def main(argv: Sequence[str]) -> None:
    """Print ``{"entries", "bytes", "seconds"}`` for one cache fill."""
    size = int(argv[0])
    print(json.dumps(asyncio.run(_fill(size, "--trace" in argv))))


if __name__ == "__main__":
    main(sys.argv[1:])
