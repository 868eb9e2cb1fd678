"""``python -m bench.profile``: where ``validate`` and the protected route spend their time.

Three scenarios on the benchmark's RS256 tokens: ``validate`` on unique tokens, on a
repeated token, and the in-process Starlette route behind ``TokenGuardMiddleware``
with a repeated token. ``cProfile`` (default) gives each function's own time as a
share of the total; it inflates the cost of small, often-called functions, so
``--tool pyinstrument`` (sampling) is there to cross-check. Results go to stdout and
``bench/results/profile.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import math
import pstats
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

from tokenguard.testing import LocalIssuer

from ._asgi import bearer, call
from ._tokens import AUDIENCE, mint_many, shaped
from .apps import starlette_app

__all__ = ["main"]

Scenario = tuple[str, int, Callable[[], Awaitable[None]]]


async def _scenarios(issuer: LocalIssuer, unique: int, repeat: int) -> list[Scenario]:
    tokens = mint_many(issuer, unique)
    token = shaped(issuer)
    validators = [issuer.validator(AUDIENCE) for _ in range(3)]
    for validator in validators:
        await validator.warm_up()
    fresh, cached, guarded = validators
    app = starlette_app(guarded)
    headers = bearer(token)

    async def validate_unique() -> None:
        for _ in range(3):
            fresh.cache.clear()  # every token is new to the cache again
            for t in tokens:
                await fresh.validate(t)

    async def validate_repeated() -> None:
        for _ in range(repeat):
            await cached.validate(token)

    async def route_repeated() -> None:
        for _ in range(repeat // 4):
            if await call(app, headers) != 200:
                raise AssertionError("the protected route refused the token")

    return [
        ("validate, unique tokens", 3 * unique, validate_unique),
        ("validate, repeated token", repeat, validate_repeated),
        ("Starlette + TokenGuardMiddleware, repeated token", repeat // 4, route_repeated),
    ]


def _where(key: tuple[str, int, str]) -> str:
    path, line, name = key
    for marker in ("site-packages/", "/src/", "/lib/python3"):
        if marker in path:
            path = path.split(marker, 1)[1]
            break
    return f"{name} ({path}:{line})" if line else name


def _cprofile_table(profile: cProfile.Profile, top: int) -> list[str]:
    stats = pstats.Stats(profile)
    entries = stats.stats  # type: ignore[attr-defined]
    total = sum(e[2] for e in entries.values()) or 1.0
    ranked = sorted(entries.items(), key=lambda kv: kv[1][2], reverse=True)[:top]
    lines = ["| Function | Calls | Own time | Incl. time |", "|---|---:|---:|---:|"]
    for key, (_, calls, own, incl, _) in ranked:
        lines.append(
            f"| `{_where(key)}` | {calls:,} | {own / total:.1%} | {min(incl / total, 1):.1%} |"
        )
    return lines


async def _profile(scenarios: list[Scenario], tool: str, top: int) -> list[str]:
    out: list[str] = []
    for title, ops, run in scenarios:
        plain = math.inf
        for _ in range(3):  # the first run also warms up; the best run is the least noisy
            started = time.perf_counter()
            await run()
            plain = min(plain, (time.perf_counter() - started) / ops * 1e6)
        summary = f"{ops:,} operations, {plain:.1f} µs each unprofiled (best of 3)."
        out += [f"## {title}", "", summary, ""]
        if tool == "pyinstrument":
            from pyinstrument import Profiler

            profiler = Profiler(interval=0.0001, async_mode="disabled")
            profiler.start()
            await run()
            profiler.stop()
            out += ["```", profiler.output_text(unicode=False, color=False).strip(), "```", ""]
        else:
            profile = cProfile.Profile()
            profile.enable()
            await run()
            profile.disable()
            out += [*_cprofile_table(profile, top), ""]
    return out


def main(argv: Sequence[str] | None = None) -> None:
    """Profile the three scenarios and write the report."""
    parser = argparse.ArgumentParser(prog="python -m bench.profile", description=__doc__)
    parser.add_argument("--tool", choices=("cprofile", "pyinstrument"), default="cprofile")
    parser.add_argument("--tokens", type=int, default=1000, help="unique tokens")
    parser.add_argument("--repeat", type=int, default=100_000, help="repeated-token calls")
    parser.add_argument("--top", type=int, default=15, help="functions per table")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args(argv)

    async def go() -> list[str]:
        issuer = LocalIssuer()
        scenarios = await _scenarios(issuer, args.tokens, args.repeat)
        return await _profile(scenarios, args.tool, args.top)

    head = [
        f"# Profile ({args.tool})",
        "",
        "Own time: in the function itself; incl. time: with what it calls; both as a",
        "share of the scenario's profiled total.",
        "",
    ]
    text = "\n".join(head + asyncio.run(go()))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"profile-{args.tool}.md").write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main(sys.argv[1:])
