"""Structure attacks: tokens that are not well-formed compact JWS (segments, base64url,
JSON, JWE and other shapes the parser must refuse).
"""

from __future__ import annotations

import json
from typing import Final

from ..kit import VAULT, Kit
from .rows import Attack, bearer, deep_json, invalid, segments


def raw_claim(k: Kit, name: str, raw_value: str) -> bytes:
    """Valid claims with one member's value spelt as raw JSON text (NaN, 1e400...)."""
    claims = k.claims(**{name: 0})
    text = json.dumps(claims, separators=(",", ":"))
    return text.replace(f'"{name}":0', f'"{name}":{raw_value}', 1).encode()


ROWS: Final = [
    Attack(
        "one-segment",
        "structure",
        "RFC 7515 §7.1",
        "A single segment",
        lambda k: bearer(segments(k.valid())[1]),
        invalid("malformed"),
    ),
    Attack(
        "two-segments",
        "structure",
        "RFC 7515 §7.1",
        "`header.payload` only",
        lambda k: bearer(k.valid().rsplit(".", 1)[0]),
        invalid("malformed"),
    ),
    Attack(
        "four-segments",
        "structure",
        "RFC 7515 §7.1",
        "A valid token with a fourth segment",
        lambda k: bearer(k.valid() + ".AAAA"),
        invalid("malformed"),
    ),
    Attack(
        "jwe-five-segments",
        "structure",
        "RFC 7516 §7.1",
        "A compact JWE (five segments) where a JWS is expected",
        lambda k: bearer(
            ".".join(["eyJhbGciOiJkaXIiLCJlbmMiOiJBMTI4R0NNIn0", "", "AAAA", "BBBB", "CCCC"])
        ),
        invalid("malformed"),
    ),
    Attack(
        "jws-json-flattened",
        "structure",
        "RFC 7515 §7.2.2",
        "Flattened JWS JSON serialization as the bearer value",
        lambda k: bearer(
            json.dumps(
                dict(zip(("protected", "payload", "signature"), segments(k.valid()), strict=True)),
                separators=(",", ":"),
            )
        ),
        invalid("malformed"),
    ),
    Attack(
        "jws-json-general",
        "structure",
        "RFC 7515 §7.2.1",
        "General JWS JSON serialization with two signatures",
        lambda k: bearer(
            json.dumps(
                {
                    "payload": segments(k.valid())[1],
                    "signatures": [
                        {"protected": segments(k.valid())[0], "signature": segments(k.valid())[2]},
                        {"protected": "eyJhbGciOiJub25lIn0", "signature": ""},
                    ],
                },
                separators=(",", ":"),
            )
        ),
        invalid("malformed"),
    ),
    Attack(
        "padded-segments",
        "structure",
        "RFC 7515 §2 (base64url without padding)",
        "A valid token whose signature segment carries `==` padding",
        lambda k: bearer(k.valid() + "=="),
        invalid("malformed"),
    ),
    Attack(
        "standard-base64-alphabet",
        "structure",
        "RFC 4648 §5",
        "Signature re-spelt in the `+/` alphabet",
        lambda k: bearer(k.valid()[:-4] + "+/+/"),
        invalid("malformed"),
    ),
    Attack(
        "space-inside-token",
        "structure",
        "RFC 7515 §7.1",
        "A space inside the payload segment",
        lambda k: bearer(k.valid().replace(".", ". ", 1)),
        invalid("malformed"),
    ),
    Attack(
        "non-canonical-base64",
        "structure",
        "RFC 4648 §3.5 (canonical encoding)",
        "Signature's last character with stray low bits (same bytes, another spelling)",
        lambda k: bearer(k.valid()[:-1] + chr(ord(k.valid()[-1]) ^ 1)),
        invalid("malformed"),
    ),
    Attack(
        "invalid-utf8-header",
        "structure",
        "RFC 8259 §8.1; RFC 7515 §5.2 step 3",
        "Header JSON with an invalid UTF-8 byte (signed)",
        lambda k: bearer(k.signed(b'{"typ":"JWT","alg":"RS256","kid":"\xff\xfe"}')),
        invalid("malformed"),
    ),
    Attack(
        "utf8-bom-payload",
        "structure",
        "RFC 8259 §8.1",
        "Payload JSON preceded by a UTF-8 byte order mark (signed)",
        lambda k: bearer(k.signed(payload=b"\xef\xbb\xbf" + json.dumps(k.claims()).encode())),
        invalid("malformed"),
    ),
    Attack(
        "duplicate-header-alg",
        "structure",
        "RFC 7515 §4; RFC 8259 §4",
        'Header with `"alg":"none"` and `"alg":"RS256"` (signed)',
        lambda k: bearer(
            k.signed(
                b'{"alg":"none","typ":"JWT","alg":"RS256","kid":"' + k.rsa_kid.encode() + b'"}'
            )
        ),
        invalid("malformed"),
    ),
    Attack(
        "duplicate-claim-aud",
        "structure",
        "RFC 7519 §4; RFC 8259 §4",
        "Two `aud` members, the attacker's first (signed)",
        lambda k: bearer(
            k.signed(
                payload=json.dumps(k.claims())[:-1].encode()
                + b',"aud":"https://evil.test","aud":"%s"}' % VAULT.encode()
            )
        ),
        invalid("malformed"),
    ),
    Attack(
        "nan-claim",
        "structure",
        "RFC 8259 §6",
        "`exp` is NaN (signed)",
        lambda k: bearer(k.signed(payload=raw_claim(k, "exp", "NaN"))),
        invalid("malformed"),
    ),
    Attack(
        "infinity-claim",
        "structure",
        "RFC 8259 §6",
        "`exp` is Infinity (signed)",
        lambda k: bearer(k.signed(payload=raw_claim(k, "exp", "Infinity"))),
        invalid("malformed"),
    ),
    Attack(
        "negative-infinity-nbf",
        "structure",
        "RFC 8259 §6",
        "`nbf` is -Infinity (signed)",
        lambda k: bearer(k.signed(payload=raw_claim(k, "nbf", "-Infinity"))),
        invalid("malformed"),
    ),
    Attack(
        "float-overflow-exp",
        "structure",
        "RFC 8259 §6; RFC 7519 §2 NumericDate",
        "`exp` is 1e400, which overflows to infinity (signed)",
        lambda k: bearer(k.signed(payload=raw_claim(k, "exp", "1e400"))),
        invalid("malformed"),
    ),
    Attack(
        "huge-integer-exp",
        "structure",
        "CVE-2020-10735 (int parsing DoS)",
        "`exp` with 5000 digits (signed)",
        lambda k: bearer(k.signed(payload=raw_claim(k, "exp", "9" * 5000))),
        invalid("malformed"),
    ),
    Attack(
        "deep-nesting-in-limit",
        "structure",
        "RFC 8259 §9 (nesting limits)",
        "5000 nested arrays inside the size limit (signed)",
        lambda k: bearer(k.signed(payload=deep_json(5000))),
        invalid("malformed"),
    ),
    Attack(
        "header-not-object",
        "structure",
        "RFC 7515 §4",
        "Header is a JSON array",
        lambda k: bearer(k.signed(b'["RS256"]')),
        invalid("malformed"),
    ),
    Attack(
        "payload-not-object",
        "structure",
        "RFC 7519 §7.2 step 10",
        "Payload is a JSON string (signed)",
        lambda k: bearer(k.signed(payload=b'"admin"')),
        invalid("malformed"),
    ),
    Attack(
        "payload-null",
        "structure",
        "RFC 7519 §7.2 step 10",
        "Payload is `null` (signed)",
        lambda k: bearer(k.signed(payload=b"null")),
        invalid("malformed"),
    ),
    Attack(
        "trailing-garbage-json",
        "structure",
        "RFC 8259 §2",
        "Payload JSON followed by garbage (signed)",
        lambda k: bearer(k.signed(payload=json.dumps(k.claims()).encode() + b" x")),
        invalid("malformed"),
    ),
    Attack(
        "empty-header",
        "structure",
        "RFC 7515 §4.1.1 (alg required)",
        "Header `{}` (signed)",
        lambda k: bearer(k.signed(b"{}")),
        invalid("malformed"),
    ),
    Attack(
        "alg-not-string",
        "structure",
        "RFC 7515 §4.1.1",
        '`"alg": ["RS256"]` (signed)',
        lambda k: bearer(k.signed({"typ": "JWT", "alg": ["RS256"], "kid": k.rsa_kid}, alg="RS256")),
        invalid("malformed"),
    ),
    Attack(
        "non-ascii-token",
        "structure",
        "RFC 7515 §7.1",
        "A non-ASCII character inside the token",
        lambda k: bearer(k.valid().replace(".", "\u00e9.", 1)),
        invalid("malformed"),
    ),
    Attack(
        "lone-surrogate-kid",
        "structure",
        "RFC 8259 §8.2; RFC 7493 §2.1",
        "kid is the JSON escape of a lone surrogate (signed by the attacker)",
        lambda k: bearer(
            k.signed(b'{"typ":"JWT","alg":"RS256","kid":"\\ud800"}', key=k.attacker_rsa)
        ),
        invalid("unknown_key"),
    ),
]
