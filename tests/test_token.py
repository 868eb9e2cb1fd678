"""The compact JWS parser: strict base64url, strict JSON, bounded sizes."""

from __future__ import annotations

import base64
import json

import pytest

from tokenguard import InvalidToken
from tokenguard._token import b64url_decode, parse_json_object, parse_token, split_token


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def compact(header: bytes | str, payload: bytes | str, signature: bytes = b"sig") -> str:
    h = header.encode() if isinstance(header, str) else header
    p = payload.encode() if isinstance(payload, str) else payload
    return f"{b64(h)}.{b64(p)}.{b64(signature)}"


GOOD = compact('{"alg":"RS256","kid":"k"}', '{"iss":"i","exp":1}')


def reason_of(token: str, max_bytes: int = 16 * 1024) -> str:
    with pytest.raises(InvalidToken) as info:
        parse_token(token, max_bytes)
    return info.value.reason


def test_parses_a_well_formed_token() -> None:
    parsed = parse_token(GOOD)
    assert parsed.header == {"alg": "RS256", "kid": "k"}
    assert parsed.claims == {"iss": "i", "exp": 1}
    assert parsed.signature == b"sig"
    assert parsed.signing_input == GOOD.rsplit(".", 1)[0].encode()


@pytest.mark.parametrize("length", range(12))
def test_base64url_round_trips_every_length(length: int) -> None:
    raw = bytes(range(length))
    assert b64url_decode(b64(raw).encode()) == raw


@pytest.mark.parametrize(
    "segment",
    [b"A", b"AR", b"AAB", b"AA AA", b"AA\nAA", b"\xff\xfe", b"A\x00AA"],
    ids=["impossible-length", "stray-bits-2", "stray-bits-3", "space", "newline", "binary", "nul"],
)
def test_base64url_refuses_non_canonical_or_foreign_text(segment: bytes) -> None:
    with pytest.raises(InvalidToken) as info:
        b64url_decode(segment)
    assert info.value.reason == "malformed"


@pytest.mark.parametrize(
    "token",
    [
        "",
        "abc",
        "a.b",
        "a.b.c.d",
        "a.b.c.d.e",  # JWE compact serialization
        GOOD + "=",
        GOOD.replace(".", "..", 1),
        "é" + GOOD,
        GOOD.replace("e", "+", 1),
        " " + GOOD,
        GOOD + "\n",
        '{"payload":"x","signatures":[]}',  # JWS JSON serialization
        "." * 1_000,
        GOOD.rsplit(".", 1)[0] + ".",  # stripped signature
    ],
)
def test_structural_garbage_is_malformed(token: str) -> None:
    assert reason_of(token) == "malformed"


def test_size_limit_is_checked_before_anything_else() -> None:
    assert reason_of("." * 20_000) == "token_too_large"
    assert reason_of(GOOD, max_bytes=len(GOOD) - 1) == "token_too_large"
    assert parse_token(GOOD, max_bytes=len(GOOD)).claims["iss"] == "i"


@pytest.mark.parametrize(
    "payload",
    [
        b'{"a":1,"a":2}',
        b'{"exp":NaN}',
        b'{"exp":Infinity}',
        b'{"exp":-Infinity}',
        b'{"exp":1e999}',
        b'{"exp":' + b"9" * 5000 + b"}",
        b"[1,2]",
        b'"text"',
        b"\xff\xfe{}",
        b'{"a":"\xc3"}',
        b"{" * 0 + b'{"a":' * 5000 + b"1" + b"}" * 5000,
        b"",
        b"{",
        b'{"nested":{"x":1,"x":2}}',
    ],
    ids=[
        "duplicate",
        "nan",
        "inf",
        "neg-inf",
        "overflow-float",
        "huge-int",
        "array",
        "string",
        "utf16-bom",
        "invalid-utf8",
        "deep-nesting",
        "empty",
        "truncated",
        "nested-duplicate",
    ],
)
def test_json_faults_are_malformed(payload: bytes) -> None:
    with pytest.raises(InvalidToken) as info:
        parse_json_object(payload)
    assert info.value.reason == "malformed"


def test_large_finite_numbers_and_unicode_are_fine() -> None:
    assert parse_json_object(b'{"exp":1e300,"n":"\xc3\xa9"}') == {"exp": 1e300, "n": "é"}


def test_split_token_returns_the_three_segments() -> None:
    signing_input, h, p, s = split_token(GOOD)
    assert b".".join((h, p, s)).decode() == GOOD
    assert signing_input == b"%s.%s" % (h, p)


def test_parse_token_rejects_json_garbage_in_header() -> None:
    assert reason_of(compact("not json", json.dumps({"a": 1}))) == "malformed"


@pytest.mark.parametrize(
    ("raw", "ok"),
    [
        (b' {"a":1}', True),
        (b'{"a":1} \n', True),
        (b'{"a":1} x', False),
        (b'{"a":1}{"b":2}', False),
        (b" ", False),
        (b'\t{"a":[1,2]}\r\n', True),
    ],
)
def test_whitespace_around_json(raw: bytes, ok: bool) -> None:
    if ok:
        assert isinstance(parse_json_object(raw), dict)
    else:
        with pytest.raises(InvalidToken):
            parse_json_object(raw)


def test_nesting_is_bounded_whatever_the_recursion_limit() -> None:
    # The decoder's own guard follows sys.getrecursionlimit(), which other libraries
    # raise for the whole process; the container bound does not move with it.
    import sys

    from tokenguard._token import MAX_JSON_CONTAINERS

    deep = b'{"a":' * 5000 + b"1" + b"}" * 5000
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(100_000)
    try:
        with pytest.raises(InvalidToken) as info:
            parse_json_object(deep)
    finally:
        sys.setrecursionlimit(limit)
    assert info.value.reason == "malformed"
    many = b'{"a":[' + b"[]," * (MAX_JSON_CONTAINERS - 3) + b"[]]}"
    assert parse_json_object(many)["a"] == [[]] * (MAX_JSON_CONTAINERS - 2)
    with pytest.raises(InvalidToken):
        parse_json_object(b'{"a":[' + b"[]," * (MAX_JSON_CONTAINERS - 2) + b"[]]}")
