"""``python -m bench.profile``: where ``validate`` and the protected route spend their time.

Three scenarios on the benchmark's RS256 tokens: ``validate`` on unique tokens, on a
repeated token, and the in-process Starlette route behind ``TokenGuardMiddleware``
with a repeated token. ``cProfile`` (default) gives each function's own time as a
share of the total; it inflates the cost of small, often-called functions, so
``--tool pyinstrument`` (sampling) is there to cross-check. Two last tables, without a
profiler, split a unique token's time: between the RSA operation and the rest, and
step by step, each step alone and inside ``validate``.
Results go to stdout and ``bench/results/profile-<tool>.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import hashlib
import math
import pstats
import sys
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from pathlib import Path
from typing import Final

from tokenguard import TokenValidator, _validator
from tokenguard._cache import TokenCache
from tokenguard._identity import identity_from_claims
from tokenguard._keys import VerificationKey
from tokenguard._token import b64url_decode, parse_json_object, split_token
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


def _signing_inputs(tokens: list[str]) -> list[tuple[bytes, bytes]]:
    """Each token's signing input and decoded signature, split before any timing."""
    parts = [split_token(token) for token in tokens]
    return [(signing_input, b64url_decode(signature)) for signing_input, _, _, signature in parts]


async def _warm_validator(issuer: LocalIssuer) -> tuple[TokenValidator, VerificationKey]:
    """A warmed-up validator for the bench audience, and its loaded signing key."""
    validator = issuer.validator(AUDIENCE)
    await validator.warm_up()
    key = validator._states[0].keys.get(issuer.signing_kid)
    if key is None:
        raise AssertionError("the signing key is not loaded")
    return validator, key


@contextlib.contextmanager
def _rsa_removed(key: VerificationKey) -> Iterator[None]:
    """Inside the block, ``key``'s RS256 check is replaced by the SHA-256 it also computes."""
    verifiers = key._verifiers
    real = verifiers["RS256"]

    def hash_only(signature: bytes, data: bytes) -> None:
        hashlib.sha256(data).digest()

    verifiers["RS256"] = hash_only
    try:
        yield
    finally:
        verifiers["RS256"] = real


async def _rsa_split(issuer: LocalIssuer, tokens: list[str]) -> list[str]:
    """A unique token's time, with and without the RSA operation (no profiler).

    The RSA operation is timed alone in a tight loop (as the floor is) and inside
    ``validate``, as the difference between ``validate`` and ``validate`` with the
    operation removed (the key's RS256 check replaced by the SHA-256 it also computes;
    a diagnostic reach into the key's private table, never done outside this report).
    """
    validator, key = await _warm_validator(issuer)
    decoded = _signing_inputs(tokens)

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
    with _rsa_removed(key):
        without = await best(validate_all)
    return _rsa_table(len(tokens), alone, full, without)


def _rsa_table(count: int, alone: float, full: float, without: float) -> list[str]:
    """The report of :func:`_rsa_split` (µs per token)."""
    return [
        "## A unique token: the RSA operation and the rest",
        "",
        f"{count:,} tokens, best of 5, µs per token.",
        "",
        "| Measure | µs |",
        "|---|---:|",
        f"| RS256 check alone, tight loop (recover + SHA-256 + compare) | {alone:.1f} |",
        f"| `validate`, unique tokens | {full:.1f} |",
        f"| `validate` with the RSA operation removed (SHA-256 kept) | {without:.1f} |",
        f"| the RSA operation inside `validate` (difference) | {full - without:.1f} |",
        "",
    ]


# The steps of a unique token, as ``TokenValidator._verify`` calls them: where each one
# lives (the name that the validator module, or a class, looks up), its calls per
# token (the header is cached, so base64url decodes the payload and the signature).
_STEP_SITES: Final = (
    (_validator, "split_token", 1, "`split_token` (size, shape, four slices)"),
    (_validator, "b64url_decode", 2, "base64url, payload and signature"),
    (_validator, "parse_json_object", 1, "strict JSON, payload"),
    (VerificationKey, "verify", 1, "RS256 check (RSA operation + SHA-256 + compare)"),
    (TokenValidator, "_check_claims", 1, "claims: `exp`, `nbf`, `iat`, `aud`, ..."),
    (_validator, "identity_from_claims", 1, "`Identity` from the claims"),
    (TokenCache, "get", 1, "cache lookup (a miss)"),
    (TokenCache, "put", 1, "cache insert"),
)

#: ``timed(index, step)``: ``step`` wrapped so that its time adds up in ``spent[index]``.
_Timed = Callable[[int, Callable[..., object]], Callable[..., object]]


async def _step_split(issuer: LocalIssuer, tokens: list[str]) -> list[str]:
    """Each step of a unique token alone (tight loop) and inside ``validate``.

    Inside ``validate`` each step is timed by a wrapper put in the place the validator
    looks it up, for this measurement only, less what the wrapper's timer adds to a call
    (measured around a no-op). What no step accounts for is the validator's own code.
    """
    validator, key = await _warm_validator(issuer)
    alone_us = _steps_alone(validator, key, tokens)
    plain, timer, inside = await _steps_inside(validator, tokens)
    return _step_table(len(tokens), timer, alone_us, inside, plain)


def _best_alone(
    run: Callable[[int], object], count: int, setup: Callable[[], None] | None = None
) -> float:
    """µs per call of ``run(i)`` for ``i`` in ``range(count)``, best of 5 rounds."""
    fastest = math.inf
    for _ in range(5):
        if setup is not None:
            setup()
        started = time.perf_counter()
        for i in range(count):
            run(i)
        fastest = min(fastest, (time.perf_counter() - started) / count * 1e6)
    return fastest


def _steps_alone(validator: TokenValidator, key: VerificationKey, tokens: list[str]) -> list[float]:
    """Each step of :data:`_STEP_SITES` in a tight loop over the tokens' own inputs."""
    state = validator._states[0]
    raws = [t.encode("ascii") for t in tokens]
    parts = [split_token(raw) for raw in raws]
    payloads = [b64url_decode(p[2]) for p in parts]
    claims = [parse_json_object(p) for p in payloads]
    signatures = [b64url_decode(p[3]) for p in parts]
    now = validator.clock()
    checked = [validator._check_claims(state, c, now) for c in claims]
    identity = identity_from_claims(claims[0], audience=checked[0][0])
    cache = TokenCache(len(tokens))
    authorizations = [b"Bearer " + raw for raw in raws]
    count = len(tokens)
    return [
        _best_alone(lambda i: split_token(raws[i]), count),
        _best_alone(lambda i: (b64url_decode(parts[i][2]), b64url_decode(parts[i][3])), count),
        _best_alone(lambda i: parse_json_object(payloads[i]), count),
        _best_alone(lambda i: key.verify("RS256", parts[i][0], signatures[i]), count),
        _best_alone(lambda i: validator._check_claims(state, claims[i], now), count),
        _best_alone(lambda i: identity_from_claims(claims[i], audience=checked[i][0]), count),
        _best_alone(lambda i: cache.get(raws[i], now), count),
        _best_alone(
            lambda i: cache.put(authorizations[i], identity, key, *checked[i][1:]),
            count,
            cache.clear,
        ),
    ]


def _timing(spent: list[int]) -> _Timed:
    """A ``timed`` that adds each wrapped call's nanoseconds to ``spent[index]``."""
    clock = time.perf_counter_ns

    def timed(index: int, step: Callable[..., object]) -> Callable[..., object]:
        def wrapper(*args: object, **kwargs: object) -> object:
            started = clock()
            try:
                return step(*args, **kwargs)
            finally:
                spent[index] += clock() - started

        return wrapper

    return timed


def _wrapper_cost(timed: _Timed, spent: list[int], count: int) -> float:
    """µs a ``timed`` wrapper's timer adds to one call: around a no-op, best of 5 rounds
    (the no-op's time adds up in ``spent``'s last slot)."""
    noop = timed(len(_STEP_SITES), lambda *args, **kwargs: None)
    timer = math.inf
    for _ in range(5):
        spent[-1] = 0
        for _ in range(count):
            noop(None, None)
        timer = min(timer, spent[-1] / count / 1000)
    return timer


@contextlib.contextmanager
def _steps_wrapped(timed: _Timed) -> Iterator[None]:
    """Inside the block, each step of :data:`_STEP_SITES` is timed where it is looked up."""
    originals = [getattr(site, name) for site, name, _, _ in _STEP_SITES]
    try:
        for index, (site, name, _, _) in enumerate(_STEP_SITES):
            setattr(site, name, timed(index, originals[index]))
        yield
    finally:
        for (site, name, _, _), original in zip(_STEP_SITES, originals, strict=True):
            setattr(site, name, original)


async def _steps_inside(
    validator: TokenValidator, tokens: list[str]
) -> tuple[float, float, list[float]]:
    """``validate``'s µs per token unwrapped, the wrapper's own µs per call, and each
    step's µs per token inside ``validate`` (its wrappers' cost taken off), in the
    least disturbed of 5 rounds."""
    spent = [0] * (len(_STEP_SITES) + 1)  # the last one calibrates the wrapper
    timed = _timing(spent)

    async def validate_all() -> float:
        validator.cache.clear()
        started = time.perf_counter()
        for token in tokens:
            await validator.validate(token)
        return (time.perf_counter() - started) / len(tokens) * 1e6

    plain = min([await validate_all() for _ in range(5)])
    timer = _wrapper_cost(timed, spent, len(tokens))
    fastest, inside = math.inf, [0.0] * len(_STEP_SITES)
    with _steps_wrapped(timed):
        for _ in range(5):
            spent[:] = [0] * len(spent)
            total = await validate_all()
            if total < fastest:  # the least disturbed round
                fastest = total
                inside = [
                    ns / len(tokens) / 1000 - timer * calls
                    for ns, (_, _, calls, _) in zip(spent, _STEP_SITES, strict=False)
                ]
    return plain, timer, inside


def _step_table(
    count: int, timer: float, alone_us: list[float], inside: list[float], plain: float
) -> list[str]:
    """The report of :func:`_step_split` (µs per token)."""
    rows = [
        f"| {label} | {a:.1f} | {b:.1f} |"
        for (_, _, _, label), a, b in zip(_STEP_SITES, alone_us, inside, strict=True)
    ]
    return [
        "## A unique token, step by step: alone and inside `validate`",
        "",
        f"{count:,} tokens, best of 5, µs per token. Alone: the step in a tight loop",
        "over the same tokens' inputs. Inside: timed by a wrapper where `validate` calls",
        f"it, less the wrapper's own {timer:.2f} µs per call (measured around a no-op). The",
        "rest is `validate` unwrapped less the steps inside: the validator's own code.",
        "",
        "| Step | alone | inside `validate` |",
        "|---|---:|---:|",
        *rows,
        f"| all the steps | {sum(alone_us):.1f} | {sum(inside):.1f} |",
        f"| the rest: the validator's own code | - | {plain - sum(inside):.1f} |",
        f"| `validate`, unique tokens | - | {plain:.1f} |",
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
        tokens = mint_many(issuer, args.tokens)
        return report + await _rsa_split(issuer, tokens) + await _step_split(issuer, tokens)

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
