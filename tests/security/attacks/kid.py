"""Key-id attacks: ``kid`` values built for path traversal, injection and lookup confusion."""

from __future__ import annotations

from typing import Any, Final

from .rows import Attack, Expect, bearer, invalid, without_kid

_KID_INJECTION: Final = "jwt_tool -I -hc kid (header injection)"


def _kid_row(
    name: str, kid: Any, title: str, expect: Expect, source: str = _KID_INJECTION
) -> Attack:
    return Attack(
        name,
        "kid",
        source,
        title,
        lambda k: bearer(k.signed(k.header(alg="RS256") | {"kid": kid}, key=k.attacker_rsa)),
        expect,
    )


ROWS: Final = [
    _kid_row(
        "kid-path-traversal",
        "../../../../../../dev/null",
        "kid `../../../../dev/null`",
        invalid("unknown_key"),
    ),
    Attack(
        "kid-dev-null-hs256",
        "kid",
        _KID_INJECTION,
        "kid `/dev/null` with HS256 keyed by the empty string",
        lambda k: bearer(k.signed(k.header("/dev/null", "HS256"), key=b"", alg="HS256")),
        invalid("algorithm_not_allowed"),
    ),
    _kid_row(
        "kid-sql-injection",
        "x' UNION SELECT 'secret' -- ",
        "kid with SQL injection",
        invalid("unknown_key"),
    ),
    _kid_row(
        "kid-command-injection", "key|/usr/bin/id", "kid with a shell pipe", invalid("unknown_key")
    ),
    _kid_row(
        "kid-log-injection",
        "a\r\n2025-01-01 ERROR forged log line",
        "kid with CR LF (log forging)",
        invalid("unknown_key"),
    ),
    _kid_row("kid-nul-byte", "key\x00.pem", "kid with a NUL byte", invalid("unknown_key")),
    _kid_row(
        "kid-url",
        "https://attacker.test/key.pem",
        "kid that is a URL (no fetch)",
        invalid("unknown_key"),
    ),
    _kid_row("kid-very-long", "k" * 10_000, "kid of 10 000 characters", invalid("unknown_key")),
    _kid_row(
        "kid-integer", 1, "kid is a number", invalid("malformed"), "RFC 7515 §4.1.4 (a string)"
    ),
    _kid_row("kid-array", ["a"], "kid is an array", invalid("malformed"), "RFC 7515 §4.1.4"),
    _kid_row(
        "kid-object",
        {"$ne": None},
        "kid is an object (NoSQL operator)",
        invalid("malformed"),
        "RFC 7515 §4.1.4",
    ),
    _kid_row("kid-boolean", True, "kid is `true`", invalid("malformed"), "RFC 7515 §4.1.4"),
    _kid_row("kid-null", None, "kid is `null`", invalid("unknown_key"), "RFC 7515 §4.1.4"),
    _kid_row("kid-empty", "", "kid is the empty string", invalid("unknown_key"), "RFC 7515 §4.1.4"),
    Attack(
        "kid-missing",
        "kid",
        "RFC 7515 §4.1.4",
        "No kid, genuinely signed",
        lambda k: bearer(k.signed(without_kid(k.header()), key=k.private(k.rsa_kid))),
        invalid("unknown_key"),
    ),
    Attack(
        "kid-case-variant",
        "kid",
        "RFC 7515 §4.1.4 (case-sensitive)",
        "The real kid in another case, genuinely signed",
        lambda k: bearer(k.signed(k.header(k.rsa_kid.swapcase()), key=k.private(k.rsa_kid))),
        invalid("unknown_key"),
    ),
    Attack(
        "kid-trailing-space",
        "kid",
        "RFC 7515 §4.1.4",
        "The real kid plus a space, genuinely signed",
        lambda k: bearer(k.signed(k.header(k.rsa_kid + " "), key=k.private(k.rsa_kid))),
        invalid("unknown_key"),
    ),
]
