"""``python -m bench.profile``: where ``validate`` and the protected route spend their time.

Three scenarios on the benchmark's RS256 tokens: ``validate`` on unique tokens, on a
repeated token, and the in-process Starlette route behind ``TokenGuardMiddleware``
with a repeated token. ``cProfile`` (default) gives each function's own time as a
share of the total; it inflates the cost of small, often-called functions, so
``--tool pyinstrument`` (sampling) is there to cross-check. A last table splits a
unique token's time between the RSA operation and the rest, without a profiler.
Results go to stdout and ``bench/results/profile-<tool>.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import cProfile
import hashlib
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


async def _rsa_split(issuer: LocalIssuer, tokens: list[str]) -> list[str]:
    """A unique token's time, with and without the RSA operation (no profiler).

    The RSA operation is timed alone in a tight loop (as the floor is) and inside
    ``validate``, as the difference between ``validate`` and ``validate`` with the
    operation removed (the key's RS256 check replaced by the SHA-256 it also computes;
    a diagnostic reach into the key's private table, never done outside this report).
    """
    validator = issuer.validator(AUDIENCE)
    await validator.warm_up()
    key = validator._states[0].keys.get(issuer.signing_kid)
    if key is None:
        raise AssertionError("the signing key is not loaded")
    pairs = []
    for token in tokens:
        head, payload, signature = token.encode().split(b".")
        pairs.append((head + b"." + payload, signature))
    decoded = [(data, base64.urlsafe_b64decode(sig + b"==")) for data, sig in pairs]

    async def best(run: Callable[[], Awaitable[None]]) -> float:
        fastest = math.inf
        for _ in range(5):
            validator.cache.clear()
            started = time.perf_counter()
            await run()
            fastest = min(fastest, (time.perf_counter() - started) / len(tokens) * 1e6)
        return fastest

    async def check_alone() -> None:
        for data, signature in decoded:
            if not key.verify("RS256", data, signature):
                raise AssertionError("a token's signature did not verify")

    async def validate_all() -> None:
        for token in tokens:
            await validator.validate(token)

    alone = await best(check_alone)
    full = await best(validate_all)
    verifiers = key._verifiers
    real = verifiers["RS256"]

    def hash_only(signature: bytes, data: bytes) -> None:
        hashlib.sha256(data).digest()

    verifiers["RS256"] = hash_only
    try:
        without = await best(validate_all)
    finally:
        verifiers["RS256"] = real
    return [
        "## A unique token: the RSA operation and the rest",
        "",
        f"{len(tokens):,} tokens, best of 5, µs per token.",
        "",
        "| Measure | µs |",
        "|---|---:|",
        f"| RS256 check alone, tight loop (recover + SHA-256 + compare) | {alone:.1f} |",
        f"| `validate`, unique tokens | {full:.1f} |",
        f"| `validate` with the RSA operation removed (SHA-256 kept) | {without:.1f} |",
        f"| the RSA operation inside `validate` (difference) | {full - without:.1f} |",
        "",
    ]


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
        report = await _profile(scenarios, args.tool, args.top)
        return report + await _rsa_split(issuer, mint_many(issuer, args.tokens))

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
