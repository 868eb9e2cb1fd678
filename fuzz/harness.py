"""The fuzz properties, shared by the quick pytest run and ``python -m fuzz``.

Properties (each counts its examples in :data:`COUNTS`):

- ``parse_text``: any text given to the token parser is parsed or raises ``InvalidToken``.
- ``parse_segments``: three base64url segments of arbitrary bytes or JSON-ish values,
  likewise.
- ``validate_text``: any text given to ``TokenValidator.validate`` raises a
  ``TokenGuardError`` (random text is never a valid token).
- ``mutated_token``: a genuine token changed in any way (characters, segments, or a
  decoded-and-re-encoded header/payload member) is never accepted.
- ``header``: any ``Authorization`` header values and query string sent through the
  middleware get 400 or 401 with a fixed-vocabulary body, never a 5xx or an exception;
  a genuine token with anything but spaces around it is never accepted.

:func:`python_calls` supports the linear-time checks: it counts the Python-level calls
(``sys.setprofile`` events) one validation makes, a deterministic stand-in for work.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import sys
from collections import Counter
from collections.abc import Callable, Coroutine
from types import FrameType
from typing import Any, Final

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.types import Message

from tokenguard import Identity, InvalidToken, TokenGuardError, TokenGuardMiddleware
from tokenguard._errors import DESCRIPTIONS
from tokenguard._token import parse_json_object, parse_token
from tokenguard.testing import LocalIssuer

__all__ = [
    "COUNTS",
    "EXAMPLES",
    "FAMILIES",
    "Harness",
    "build_properties",
    "json_values",
    "python_calls",
]

#: Examples per property; ``make test`` keeps it small, ``make fuzz`` raises it.
EXAMPLES: Final = int(os.environ.get("TOKENGUARD_FUZZ_EXAMPLES", "120"))
#: How many examples each property has run in this process.
COUNTS: Counter[str] = Counter()

NOW: Final = 1_750_000_000
VAULT: Final = "https://vault.azure.net"
_FIXED_BODIES: Final = frozenset(DESCRIPTIONS.values())

json_values: st.SearchStrategy[Any] = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
"""JSON-ish values, NaN and infinities included (``json.dumps`` writes them)."""


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


async def _ok_app(scope: Any, receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


class Harness:
    """A local issuer, a warmed-up validator and the middleware, on one private loop.

    The properties are synchronous (hypothesis drives them); the validator's coroutines
    run on :attr:`runner`, which lives as long as the harness.
    """

    def __init__(self, max_token_bytes: int = 16 * 1024) -> None:
        self.runner = asyncio.Runner()
        self.issuer = LocalIssuer(clock=lambda: NOW)
        self.validator = self.issuer.validator(
            VAULT, clock=lambda: float(NOW), max_token_bytes=max_token_bytes
        )
        self.run(self.validator.warm_up())
        self.middleware = TokenGuardMiddleware(
            _ok_app, validator=self.validator, warm_up=False, close_validator=False
        )
        #: A few genuine tokens (minting is slow next to validating).
        self.tokens = [self.issuer.mint(VAULT, roles=["Secrets.Read"]) for _ in range(4)]

    def run(self, coroutine: Coroutine[Any, Any, Any]) -> Any:
        """Run a coroutine on the harness's loop."""
        return self.runner.run(coroutine)

    def close(self) -> None:
        """Close the validator's client and the loop."""
        self.run(self.validator.aclose())
        self.runner.close()

    # -- properties ---------------------------------------------------------------

    def parse_text(self, text: str) -> None:
        """Any text: parsed, or ``InvalidToken``."""
        COUNTS["parse_text"] += 1
        with contextlib.suppress(InvalidToken):
            parse_token(text)

    def parse_segments(self, header: bytes, payload: bytes, signature: bytes) -> None:
        """Three well-formed base64url segments around arbitrary bytes."""
        COUNTS["parse_segments"] += 1
        token = f"{b64(header)}.{b64(payload)}.{b64(signature)}"
        try:
            parsed = parse_token(token)
        except InvalidToken:
            return
        # What parses is exactly what was sent: objects, byte for byte.
        assert type(parsed.header) is dict
        assert type(parsed.claims) is dict
        assert parsed.signature == signature

    def json_differential(self, raw: bytes) -> None:
        """The token JSON parser agrees with the standard library held to the same rules."""
        COUNTS["json_differential"] += 1
        try:
            expected: object = _reference_json(raw)
        except (ValueError, RecursionError):
            expected = _REJECTED
        try:
            got: object = parse_json_object(raw)
        except InvalidToken:
            got = _REJECTED
        assert got == expected, (raw, got, expected)

    def validate_text(self, text: str) -> None:
        """Any text given to the validator: a ``TokenGuardError``, never an identity."""
        COUNTS["validate_text"] += 1
        outcome = self._validate(text)
        assert isinstance(outcome, TokenGuardError), f"accepted or crashed: {outcome!r}"

    def mutated_token(self, original: str, mutated: str) -> None:
        """A genuine token, changed: never accepted."""
        COUNTS["mutated_token"] += 1
        if mutated == original:
            return
        outcome = self._validate(mutated)
        assert isinstance(outcome, InvalidToken), f"mutated token gave {outcome!r}"

    def header(self, values: list[bytes], query: bytes) -> None:
        """Arbitrary Authorization values and query through the middleware."""
        COUNTS["header"] += 1
        status, body = self.run(self._request(values, query))
        assert status in (400, 401), status
        assert json.loads(body)["error_description"] in _FIXED_BODIES

    def framed_token(self, before: bytes, after: bytes, index: int) -> None:
        """A genuine token framed by arbitrary bytes: accepted only if they are spaces."""
        COUNTS["framed_token"] += 1
        token = self.tokens[index % len(self.tokens)].encode()
        status, _ = self.run(self._request([b"Bearer " + before + token + after], b""))
        clean = before.strip(b" ") == b"" and after.strip(b" ") == b""
        assert (status == 200) == clean, (status, before, after)
        if not clean:
            assert status in (400, 401), status

    # -- plumbing -------------------------------------------------------------------

    def _validate(self, token: str) -> Identity | BaseException:
        try:
            return self.run(self.validator.validate(token))  # type: ignore[no-any-return]
        except TokenGuardError as exc:
            return exc

    async def _request(self, values: list[bytes], query: bytes) -> tuple[int, bytes]:
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "GET",
            "scheme": "http",
            "path": "/",
            "raw_path": b"/",
            "query_string": query,
            "root_path": "",
            "headers": [(b"authorization", v) for v in values],
            "client": ("127.0.0.1", 50000),
            "server": ("testserver", 80),
        }
        sent: list[dict[str, Any]] = []

        async def receive() -> Message:
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message: Message) -> None:
            sent.append(dict(message))

        await self.middleware(scope, receive, send)
        status = sent[0]["status"]
        body = b"".join(m.get("body", b"") for m in sent[1:])
        return status, body


_REJECTED: Final = object()


def _reference_json(raw: bytes) -> dict[str, Any]:
    """``json.loads`` with tokenguard's rules: objects only, no duplicates, finite numbers."""

    def unique(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        if len({name for name, _ in pairs}) != len(pairs):
            raise ValueError("duplicate member")
        return dict(pairs)

    def finite(text: str) -> float:
        value = float(text)
        if value in (float("inf"), float("-inf")):
            raise ValueError("not finite")
        return value

    def constant(name: str) -> Any:
        raise ValueError(name)

    value = json.loads(
        raw.decode("utf-8"), object_pairs_hook=unique, parse_float=finite, parse_constant=constant
    )
    if type(value) is not dict:
        raise ValueError("not an object")
    return value


# -- mutations ------------------------------------------------------------------------

_CHARS: Final = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.=+/ \t\x00é"


def _segment_json(token: str, index: int, change: Callable[[dict[str, Any]], None]) -> str:
    parts = token.split(".")
    value = json.loads(unb64(parts[index]))
    change(value)
    parts[index] = b64(json.dumps(value).encode())
    return ".".join(parts)


@st.composite
def mutations(draw: st.DrawFn, token: str) -> str:
    """Apply one to three random changes to ``token``."""
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(
            st.sampled_from(
                [
                    "replace",
                    "insert",
                    "delete",
                    "swapcase",
                    "truncate",
                    "swap-segments",
                    "duplicate-segment",
                    "header-member",
                    "claim",
                    "drop-claim",
                ]
            )
        )
        n = len(token)
        i = draw(st.integers(0, max(0, n - 1)))
        if kind == "replace" and n:
            token = token[:i] + draw(st.sampled_from(_CHARS)) + token[i + 1 :]
        elif kind == "insert":
            token = token[:i] + draw(st.sampled_from(_CHARS)) + token[i:]
        elif kind == "delete" and n:
            token = token[:i] + token[i + 1 :]
        elif kind == "swapcase" and n:
            token = token[:i] + token[i].swapcase() + token[i + 1 :]
        elif kind == "truncate":
            token = token[:i]
        else:
            token = _structural(draw, token, kind)
    return token


def _structural(draw: st.DrawFn, token: str, kind: str) -> str:
    parts = token.split(".")
    if len(parts) != 3:
        return token + "."
    if kind == "swap-segments":
        a, b = draw(st.permutations([0, 1, 2]))[:2]
        parts[a], parts[b] = parts[b], parts[a]
        return ".".join(parts)
    if kind == "duplicate-segment":
        parts.insert(draw(st.integers(0, 3)), parts[draw(st.integers(0, 2))])
        return ".".join(parts)
    try:
        if kind == "header-member":
            name = draw(st.sampled_from(["alg", "kid", "typ", "crit", "jku", "jwk", "x5c", "zip"]))
            value = draw(json_values | st.sampled_from(["none", "HS256", "RS384", "ES256"]))
            return _segment_json(token, 0, lambda h: h.__setitem__(name, value))
        claim = draw(st.sampled_from(["exp", "nbf", "iat", "iss", "aud", "roles", "oid", "tid"]))
        if kind == "drop-claim":
            return _segment_json(token, 1, lambda c: c.pop(claim, None))
        value = draw(json_values)
        return _segment_json(token, 1, lambda c: c.__setitem__(claim, value))
    except (ValueError, TypeError, AttributeError):  # an earlier mutation broke the segment
        return token + "A"


def python_calls(function: Callable[[], object]) -> int:
    """How many Python and C function calls ``function()`` makes (a work measure)."""
    calls = 0

    def profile(frame: FrameType, event: str, arg: object) -> None:
        nonlocal calls
        if event in ("call", "c_call"):
            calls += 1

    sys.setprofile(profile)
    try:
        function()
    finally:
        sys.setprofile(None)
    return calls


# -- the properties as runnable hypothesis tests ---------------------------------------

_TOKENISH: Final = st.from_regex(
    r"[A-Za-z0-9_\-=+/ ]{0,40}(\.[A-Za-z0-9_\-=+/ ]{0,40}){0,4}", fullmatch=True
)


def _json_bytes(value: Any) -> bytes:
    return json.dumps(value).encode()


def build_properties(h: Harness, examples: int) -> dict[str, Callable[[], None]]:
    """Each property as a zero-argument hypothesis test running ``examples`` examples."""
    config = settings(
        max_examples=examples,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        print_blob=True,
    )
    token_index = st.integers(0, len(h.tokens) - 1)
    return {
        **_parser_properties(h, config),
        **_validator_properties(h, config, token_index),
        **_middleware_properties(h, config, token_index),
    }


def _parser_properties(h: Harness, config: settings) -> dict[str, Callable[[], None]]:
    """The token parser and its JSON parser, alone."""
    segment = st.binary(max_size=64) | json_values.map(_json_bytes)

    @config
    @given(st.text(max_size=200) | _TOKENISH)
    def parse_text(text: str) -> None:
        h.parse_text(text)

    @config
    @given(segment, segment, st.binary(max_size=64))
    def parse_segments(header: bytes, payload: bytes, signature: bytes) -> None:
        h.parse_segments(header, payload, signature)

    spaced = st.sampled_from([b"", b" ", b"\n", b"\t", b"\r\n ", b"\x0c", b"\xef\xbb\xbf"])

    @config
    @given(
        st.tuples(spaced, json_values.map(_json_bytes), spaced).map(b"".join)
        | st.binary(max_size=40)
        | st.dictionaries(st.text(max_size=4), json_values, max_size=4).map(_json_bytes)
    )
    def json_differential(raw: bytes) -> None:
        h.json_differential(raw)

    return {
        "parse_text": parse_text,
        "parse_segments": parse_segments,
        "json_differential": json_differential,
    }


def _validator_properties(
    h: Harness, config: settings, token_index: st.SearchStrategy[int]
) -> dict[str, Callable[[], None]]:
    """``TokenValidator.validate`` on random text and on changed genuine tokens."""

    @config
    @given(st.text(max_size=300) | _TOKENISH)
    def validate_text(text: str) -> None:
        h.validate_text(text)

    @config
    @given(st.data(), token_index)
    def mutated_token(data: st.DataObject, index: int) -> None:
        original = h.tokens[index]
        h.mutated_token(original, data.draw(mutations(original)))

    return {"validate_text": validate_text, "mutated_token": mutated_token}


def _middleware_properties(
    h: Harness, config: settings, token_index: st.SearchStrategy[int]
) -> dict[str, Callable[[], None]]:
    """The middleware on arbitrary headers and query strings, and on framed genuine tokens."""

    @config
    @given(
        st.lists(
            st.binary(max_size=80)
            | st.tuples(
                st.sampled_from([b"Bearer ", b"bearer ", b"Basic ", b"Bearer"]),
                st.binary(max_size=80),
            ).map(b"".join),
            max_size=3,
        ),
        st.binary(max_size=80) | st.sampled_from([b"access_token=", b"access_token=a.b.c"]),
    )
    def header(values: list[bytes], query: bytes) -> None:
        h.header(values, query)

    @config
    @given(st.binary(max_size=8), st.binary(max_size=8), token_index)
    def framed_token(before: bytes, after: bytes, index: int) -> None:
        h.framed_token(before, after, index)

    return {"header": header, "framed_token": framed_token}


# -- linear work ---------------------------------------------------------------------


def _payload_token(h: Harness, payload: bytes) -> str:
    header = {"typ": "JWT", "alg": "RS256", "kid": h.issuer.signing_kid}
    return f"{b64(_json_bytes(header))}.{b64(payload)}.{b64(b'x' * 256)}"


#: Input families, each ``n -> (where, input)``; ``where`` is ``validate`` or ``header``.
FAMILIES: Final[dict[str, Callable[[Harness, int], tuple[str, str]]]] = {
    "dots": lambda h, n: ("validate", "." * n),
    "one-segment": lambda h, n: ("validate", "a" * n),
    "base64-noise": lambda h, n: ("validate", "A" * n + ".AAAA.AAAA"),
    "long-kid": lambda h, n: (
        "validate",
        f"{b64(_json_bytes({'alg': 'RS256', 'kid': 'k' * n}))}.e30.AAAA",
    ),
    "nested-arrays": lambda h, n: ("validate", _payload_token(h, b"[" * n + b"]" * n)),
    "many-objects": lambda h, n: (
        "validate",
        _payload_token(h, b'{"x":[' + b",".join([b"{}"] * (n // 3)) + b"]}"),
    ),
    "many-members": lambda h, n: (
        "validate",
        _payload_token(h, _json_bytes({f"m{i}": i for i in range(n // 8)})),
    ),
    "escaped-string": lambda h, n: (
        "validate",
        _payload_token(h, b'{"x":"' + b"\\u0041" * (n // 6) + b'"}'),
    ),
    "long-header": lambda h, n: ("header", "Bearer " + "a" * n),
    "long-query": lambda h, n: ("header", "?" + "x=1&" * (n // 4) + "access_token=a.b.c"),
}


def run_family(h: Harness, family: str, n: int) -> Callable[[], object]:
    """A zero-argument callable doing one rejection of ``family`` at size ``n``."""
    where, value = FAMILIES[family](h, n)
    if where == "validate":
        return lambda: h._validate(value)
    if value.startswith("?"):
        query = value[1:].encode()
        return lambda: h.run(h._request([], query))
    return lambda: h.run(h._request([value.encode()], b""))
