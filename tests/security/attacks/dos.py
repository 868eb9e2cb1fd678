"""Denial-of-service attacks: oversized tokens, headers and claims, deep JSON and
compression bombs that must be refused in bounded work.
"""

from __future__ import annotations

import json
import zlib
from typing import Final

from ..kit import Kit, b64
from .rows import ACCEPTED, Attack, bearer, deep_json, invalid


def sized_token(k: Kit, length: int) -> str:
    """A valid token exactly ``length`` characters long (a padding claim and header)."""
    for extra in range(4):
        header = k.header(x5t="x" * extra)
        base = len(k.signed(header, k.claims(pad="")))
        guess = max(0, (length - base) * 3 // 4)
        for pad in range(max(0, guess - 4), guess + 5):
            token = k.signed(header, k.claims(pad="p" * pad))
            if len(token) == length:
                return token
    raise AssertionError(f"cannot build a token of exactly {length} characters")


def jwe_zip_bomb() -> str:
    """A compact JWE whose ciphertext inflates from ~10 KB to 10 MB (``zip: DEF``)."""
    header = {"alg": "dir", "enc": "A128GCM", "zip": "DEF"}
    bomb = zlib.compress(b"\0" * 10_000_000, 9)
    return ".".join([b64(json.dumps(header).encode()), "", b64(b"\0" * 12), b64(bomb), "A" * 22])


def jws_zip(k: Kit) -> str:
    deflated = zlib.compress(json.dumps(k.claims()).encode())
    return k.signed(k.header(zip="DEF"), deflated)


_MIB: Final = 1024 * 1024

ROWS: Final = [
    Attack(
        "header-1mib",
        "dos",
        "CWE-400; RFC 9110 §5.4 (field limits)",
        "A 1 MiB bearer token",
        lambda k: bearer("a" * _MIB),
        invalid("token_too_large"),
    ),
    Attack(
        "million-dots",
        "dos",
        "CWE-400 (uncontrolled resource use)",
        "A token of a million dots",
        lambda k: bearer("." * 1_000_000),
        invalid("token_too_large"),
    ),
    Attack(
        "nested-brackets-100k",
        "dos",
        "CWE-674 (uncontrolled recursion)",
        "Payload of 100 000 nested arrays",
        lambda k: bearer(k.signed(payload=deep_json(100_000))),
        invalid("token_too_large"),
    ),
    Attack(
        "huge-kid-1mib",
        "dos",
        "CWE-400",
        "A kid of 1 MiB",
        lambda k: bearer(k.signed(k.header("k" * _MIB))),
        invalid("token_too_large"),
    ),
    Attack(
        "jwe-zip-bomb",
        "dos",
        "CVE-2024-33664 (JWE zip bomb)",
        "Compact JWE whose `zip: DEF` ciphertext inflates 1000x",
        lambda k: bearer(jwe_zip_bomb()),
        invalid("malformed"),
    ),
    Attack(
        "jws-zip-header",
        "dos",
        "RFC 7516 §4.1.3 (zip is JWE-only); CVE-2024-33664",
        "JWS with `zip: DEF` and a deflated payload (signed)",
        lambda k: bearer(jws_zip(k)),
        invalid("malformed"),
    ),
    Attack(
        "token-at-size-limit",
        "dos",
        "tokenguard limit (16 KiB)",
        "Control: a valid token of exactly 16 384 characters",
        lambda k: bearer(sized_token(k, 16 * 1024)),
        ACCEPTED,
    ),
    Attack(
        "token-over-size-limit",
        "dos",
        "tokenguard limit (16 KiB)",
        "A valid token of 16 385 characters",
        lambda k: bearer(sized_token(k, 16 * 1024 + 1)),
        invalid("token_too_large"),
    ),
    Attack(
        "dots-inside-limit",
        "dos",
        "CWE-400",
        "16 000 dots (inside the size limit)",
        lambda k: bearer("." * 16_000),
        invalid("malformed"),
    ),
    Attack(
        "many-audiences",
        "dos",
        "CWE-400",
        "1000 audiences, none ours (signed)",
        lambda k: bearer(k.valid(aud=[f"a{i}" for i in range(1000)])),
        invalid("wrong_audience"),
    ),
]
