"""The attack catalogue: one row per attack, with its source and the expected answer.

Each row builds a :class:`Probe` (the token handed to ``TokenValidator.validate`` and the
HTTP request sent through ``TokenGuardMiddleware``) from a :class:`~tests.security.kit.Kit`
and says what must come back: status, RFC 6750 error code and ``reason``.
``python -m tests.security.catalogue`` prints the table that SECURITY.md carries.

Tokens in the claim rows are genuinely signed by the trusted key, so a rejection is
down to the claim under test and not to the signature.
"""

from __future__ import annotations

import base64
import json
import sys
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from .kit import GENERIC_AUDIENCE, NOW, STORAGE, TEMPLATE_AUDIENCE, VAULT, Kit, b64, compact

__all__ = ["ATTACKS", "Attack", "Expect", "Probe", "document_block", "markdown_table"]

Headers = tuple[tuple[bytes, bytes], ...]


@dataclass(frozen=True)
class Probe:
    """What an attack sends.

    ``token`` goes to ``TokenValidator.validate``; ``None`` marks a request-level attack
    that the middleware must refuse before any token reaches the validator. The HTTP
    request carries ``headers`` (default: ``Authorization: Bearer <token>``), ``query``
    and ``body``. ``prime`` tokens are validated beforehand (they must pass).
    """

    token: str | None
    headers: Headers | None = None
    query: str = ""
    method: str = "GET"
    body: bytes = b""
    #: Genuine tokens validated first, so the verified-token cache holds them.
    prime: tuple[str, ...] = ()

    def request_headers(self) -> Headers:
        """The headers the HTTP request carries."""
        if self.headers is not None:
            return self.headers
        assert self.token is not None
        return ((b"authorization", b"Bearer " + self.token.encode("latin-1")),)


@dataclass(frozen=True)
class Expect:
    """The answer: HTTP status, RFC 6750 ``error`` code and tokenguard ``reason``."""

    status: int
    error: str | None
    reason: str | None

    def __str__(self) -> str:
        if self.status == 200:
            return "200 accepted"
        return f"{self.status} {self.error or '(no code)'} `{self.reason}`"


@dataclass(frozen=True)
class Attack:
    """One row of the catalogue."""

    id: str
    area: str
    source: str
    title: str
    make: Callable[[Kit], Probe]
    expect: Expect


ACCEPTED: Final = Expect(200, None, None)
NO_CREDENTIALS: Final = Expect(401, None, "missing_token")


def invalid(reason: str) -> Expect:
    """401 ``invalid_token`` with ``reason``."""
    return Expect(401, "invalid_token", reason)


def bad_request(reason: str) -> Expect:
    """400 ``invalid_request`` with ``reason``."""
    return Expect(400, "invalid_request", reason)


def bearer(token: str) -> Probe:
    """A token sent the normal way."""
    return Probe(token)


def raw_bearer(token: bytes, scheme: bytes = b"Bearer") -> Probe:
    """A token sent as raw header bytes; the validator gets them decoded as Latin-1."""
    return Probe(token.decode("latin-1"), ((b"authorization", scheme + b" " + token),))


def auth(*values: bytes, query: str = "") -> Probe:
    """A request-level probe with raw ``Authorization`` values."""
    return Probe(None, tuple((b"authorization", v) for v in values), query=query)


# -- building blocks ----------------------------------------------------------------

P256_ORDER: Final = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551


def with_header(token: str, **changes: Any) -> str:
    """Re-encode a token's header with ``changes``, keeping payload and signature."""
    h64, rest = token.split(".", 1)
    header = json.loads(base64.urlsafe_b64decode(h64 + "=" * (-len(h64) % 4)))
    header.update(changes)
    return b64(json.dumps(header, separators=(",", ":")).encode()) + "." + rest


def without_kid(header: dict[str, Any]) -> dict[str, Any]:
    """A header without its kid."""
    return {name: value for name, value in header.items() if name != "kid"}


def segments(token: str) -> list[str]:
    """The dot-separated parts of a token."""
    return token.split(".")


def hs_forged(k: Kit, kid: str, secret: bytes, alg: str = "HS256") -> str:
    """HMAC-signed with a public key as the secret (algorithm confusion)."""
    return k.signed(k.header(kid, alg), key=secret, alg=alg)


def rsa_public(k: Kit) -> rsa.RSAPublicKey:
    key = k.private(k.rsa_kid).public_key()
    assert isinstance(key, rsa.RSAPublicKey)
    return key


def public_form(k: Kit, kid: str, encoding: Encoding, fmt: PublicFormat) -> bytes:
    """A published key serialised the way HMAC-confusion attacks try it."""
    return k.private(kid).public_key().public_bytes(encoding, fmt)


def certificate_pem(k: Kit, kid: str) -> bytes:
    """The x5c certificate of a published key, as PEM."""
    der = base64.b64decode(k.public_jwk(kid)["x5c"][0])
    return x509.load_der_x509_certificate(der).public_bytes(Encoding.PEM)


def ec_token(k: Kit, kid: str = "ec256", alg: str = "ES256") -> str:
    return k.signed(k.header(kid, alg))


def with_ec_signature(k: Kit, r: int, s: int, size: int = 32) -> str:
    return k.resign(ec_token(k), r.to_bytes(size, "big") + s.to_bytes(size, "big"))


def ecdsa_der(k: Kit) -> str:
    """A genuine ES256 signature, but DER-encoded instead of raw ``r || s``."""
    token = ec_token(k)
    key = k.private("ec256")
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    der = key.sign(token.rsplit(".", 1)[0].encode(), ec.ECDSA(hashes.SHA256()))
    return k.resign(token, der)


def raw_signature(token: str) -> bytes:
    s64 = segments(token)[2]
    return base64.urlsafe_b64decode(s64 + "=" * (-len(s64) % 4))


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


def raw_claim(k: Kit, name: str, raw_value: str) -> bytes:
    """Valid claims with one member's value spelt as raw JSON text (NaN, 1e400...)."""
    claims = k.claims(**{name: 0})
    text = json.dumps(claims, separators=(",", ":"))
    return text.replace(f'"{name}":0', f'"{name}":{raw_value}', 1).encode()


def resigned(token: str, change: Callable[[bytes], bytes]) -> str:
    """The token with its own genuine signature changed by ``change``."""
    head, _ = token.rsplit(".", 1)
    return head + "." + b64(change(raw_signature(token)))


def ec_resigned(
    k: Kit, change: Callable[[bytes], bytes], kid: str = "ec256", alg: str = "ES256"
) -> str:
    """A genuine EC/EdDSA token whose signature is changed by ``change``."""
    return resigned(ec_token(k, kid, alg), change)


def jwe_zip_bomb() -> str:
    """A compact JWE whose ciphertext inflates from ~10 KB to 10 MB (``zip: DEF``)."""
    header = {"alg": "dir", "enc": "A128GCM", "zip": "DEF"}
    bomb = zlib.compress(b"\0" * 10_000_000, 9)
    return ".".join([b64(json.dumps(header).encode()), "", b64(b"\0" * 12), b64(bomb), "A" * 22])


def jws_zip(k: Kit) -> str:
    deflated = zlib.compress(json.dumps(k.claims()).encode())
    return k.signed(k.header(zip="DEF"), deflated)


def generic_token(k: Kit, typ: Any, **claims: Any) -> str:
    body = {**k.generic.claims(GENERIC_AUDIENCE), "scope": "tasks.read"}  # RFC 9068 scope
    body.update(claims)
    header = {"typ": typ, "alg": "RS256", "kid": k.generic.signing_kid}
    if typ is None:
        del header["typ"]
    return k.signed(header, body, key=k.private(k.generic.signing_kid, k.generic))


def template_token(k: Kit, *, tid: str, iss: str | None = None, kid: str | None = None) -> str:
    """A v2 token of the multi-tenant issuer, signed by its key ``kid`` (default: ``template``)."""
    body = k.multi.claims(TEMPLATE_AUDIENCE, tenant_id=tid, version="2.0", roles=["Tasks.Read"])
    if iss is not None:
        body["iss"] = iss
    kid = kid or k.multi.signing_kid
    return k.signed(k.header(kid), body, key=k.private(kid, k.multi))


def pss_without_leading_zero(k: Kit) -> str:
    """A genuine PS256 token whose signature starts with a zero octet, that octet dropped.

    PSS is randomised, so signing again draws a new signature; one in 256 starts with 0.
    """
    for _ in range(20_000):
        token = k.signed(k.header(alg="PS256"))
        signature = raw_signature(token)
        if signature[0] == 0:
            return k.resign(token, signature[1:])
    raise AssertionError("no PS256 signature with a leading zero octet in 20000 draws")


def template_issuer(tid: str) -> str:
    return f"https://login.microsoftonline.test/{tid}/v2.0"


def deep_json(depth: int) -> bytes:
    return b'{"exp":%d,"x":' % (NOW + 3600) + b"[" * depth + b"]" * depth + b"}"


# -- the table ----------------------------------------------------------------------

_REQUEST: Final = [
    Attack(
        "no-authorization",
        "request",
        "RFC 6750 §3",
        "No Authorization header at all",
        lambda k: Probe(None, ()),
        NO_CREDENTIALS,
    ),
    Attack(
        "basic-scheme",
        "request",
        "RFC 6750 §3; RFC 7235 §2.1",
        "Another scheme (Basic) is no bearer credential",
        lambda k: auth(b"Basic dXNlcjpwYXNzd29yZA=="),
        NO_CREDENTIALS,
    ),
    Attack(
        "bearer-without-token",
        "request",
        "RFC 6750 §2.1",
        "`Bearer` with no token",
        lambda k: auth(b"Bearer"),
        bad_request("empty_token"),
    ),
    Attack(
        "bearer-spaces-only",
        "request",
        "RFC 6750 §2.1",
        "`Bearer` followed by spaces only",
        lambda k: auth(b"Bearer      "),
        bad_request("empty_token"),
    ),
    Attack(
        "two-authorization-headers",
        "request",
        "RFC 6750 §3.1; RFC 9110 §5.3",
        "Two Authorization headers, each with a valid token",
        lambda k: auth(b"Bearer " + k.valid().encode(), b"Bearer " + k.valid().encode()),
        bad_request("multiple_authorization"),
    ),
    Attack(
        "header-and-query-token",
        "request",
        "RFC 6750 §2 (one method only)",
        "A valid token both in the header and in `access_token`",
        lambda k: auth(b"Bearer " + k.valid().encode(), query="access_token=" + k.valid()),
        bad_request("multiple_methods"),
    ),
    Attack(
        "query-token",
        "request",
        "RFC 6750 §2.3, §5.3",
        "A valid token in the URI query (leaks to logs; refused by default)",
        lambda k: Probe(None, (), query="access_token=" + k.valid()),
        bad_request("query_token_not_allowed"),
    ),
    Attack(
        "query-token-twice",
        "request",
        "RFC 6750 §2.3",
        "`access_token` twice in the query",
        lambda k: Probe(None, (), query="access_token=a.b.c&access_token=d.e.f"),
        bad_request("multiple_methods"),
    ),
    Attack(
        "query-token-empty",
        "request",
        "RFC 6750 §2.3",
        "Empty `access_token` in the query",
        lambda k: Probe(None, (), query="access_token="),
        bad_request("empty_token"),
    ),
    Attack(
        "basic-plus-query-token",
        "request",
        "RFC 6750 §2.3",
        "Basic credentials plus a query token",
        lambda k: auth(b"Basic dXNlcjpwYXNz", query="access_token=" + k.valid()),
        bad_request("query_token_not_allowed"),
    ),
    Attack(
        "form-body-token",
        "request",
        "RFC 6750 §2.2",
        "A valid token in a form body only (the body is never read)",
        lambda k: Probe(
            None,
            ((b"content-type", b"application/x-www-form-urlencoded"),),
            method="POST",
            body=b"access_token=" + k.valid().encode(),
        ),
        NO_CREDENTIALS,
    ),
    Attack(
        "tab-after-scheme",
        "request",
        "RFC 7235 §2.1 (1*SP after the scheme)",
        "`Bearer<TAB>token` is not the Bearer scheme",
        lambda k: auth(b"Bearer\t" + k.valid().encode()),
        NO_CREDENTIALS,
    ),
    Attack(
        "lowercase-scheme",
        "request",
        "RFC 7235 §2.1 (scheme is case-insensitive)",
        "Control: `bearer` in lower case with a valid token",
        lambda k: raw_bearer(k.valid().encode(), scheme=b"bearer"),
        ACCEPTED,
    ),
    Attack(
        "auth-params-after-token",
        "request",
        "RFC 6750 §2.1 (b64token only)",
        "Valid token followed by `, realm=x` auth-params",
        lambda k: bearer(k.valid() + ", realm=x"),
        invalid("malformed"),
    ),
    Attack(
        "nul-after-token",
        "request",
        "RFC 9110 §5.5 (field values)",
        "Valid token followed by a NUL byte",
        lambda k: bearer(k.valid() + "\x00"),
        invalid("malformed"),
    ),
    Attack(
        "latin1-bytes-in-header",
        "request",
        "RFC 9110 §5.5 (obs-text)",
        "Valid token with UTF-8 bytes appended (decoded as Latin-1)",
        lambda k: raw_bearer(k.valid().encode() + "é".encode()),
        invalid("malformed"),
    ),
]

_STRUCTURE: Final = [
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


def _none_row(alg: str) -> Attack:
    return Attack(
        f"alg-{alg}",
        "algorithm",
        "CVE-2015-9235; jwt_tool -X a",
        f'`"alg":"{alg}"` with the signature stripped',
        lambda k: bearer(compact(k.header(alg=alg), k.claims())),
        invalid("malformed"),
    )


def _hs(
    name: str, source: str, title: str, form: Callable[[Kit], tuple[str, bytes]], alg: str = "HS256"
) -> Attack:
    return Attack(
        name,
        "algorithm",
        source,
        title,
        lambda k: bearer(hs_forged(k, *form(k), alg=alg)),
        invalid("algorithm_not_allowed"),
    )


_CONFUSION: Final = "CVE-2016-10555; CVE-2022-29217; jwt_tool -X k"

_ALGORITHM: Final = [
    *(_none_row(alg) for alg in ("none", "None", "NONE", "nOnE")),
    Attack(
        "alg-none-with-signature",
        "algorithm",
        "RFC 8725 §3.1",
        '`"alg":"none"` keeping a signature segment',
        lambda k: bearer(with_header(k.valid(), alg="none")),
        invalid("algorithm_not_allowed"),
    ),
    Attack(
        "stripped-signature",
        "algorithm",
        "jwt_tool -X n; CVE-2020-28042",
        "RS256 header, empty signature segment",
        lambda k: bearer(k.valid().rsplit(".", 1)[0] + "."),
        invalid("malformed"),
    ),
    Attack(
        "signature-from-other-token",
        "algorithm",
        "RFC 7515 §5.2",
        "Signature copied from another valid token",
        lambda k: bearer(k.resign(k.valid(roles=["Admin"]), raw_signature(k.valid()))),
        invalid("bad_signature"),
    ),
    Attack(
        "tampered-payload",
        "algorithm",
        "jwt_tool -T (tamper)",
        "Payload re-encoded with an extra role, original signature kept",
        lambda k: bearer(
            ".".join(
                [
                    segments(k.valid())[0],
                    b64(json.dumps(k.claims(roles=["Secrets.Read", "Admin"])).encode()),
                    segments(k.valid())[2],
                ]
            )
        ),
        invalid("bad_signature"),
    ),
    Attack(
        "unpublished-key",
        "algorithm",
        "RFC 7515 §5.2",
        "Known kid, signed by a key the issuer never published",
        lambda k: bearer(k.signed(key=k.attacker_rsa)),
        invalid("bad_signature"),
    ),
    _hs(
        "hs256-pem-lf",
        _CONFUSION,
        "HS256 keyed with the RSA public key, PEM (LF)",
        lambda k: (
            k.rsa_kid,
            public_form(k, k.rsa_kid, Encoding.PEM, PublicFormat.SubjectPublicKeyInfo),
        ),
    ),
    _hs(
        "hs256-pem-crlf",
        _CONFUSION,
        "HS256 keyed with the RSA public key, PEM (CRLF)",
        lambda k: (
            k.rsa_kid,
            public_form(k, k.rsa_kid, Encoding.PEM, PublicFormat.SubjectPublicKeyInfo).replace(
                b"\n", b"\r\n"
            ),
        ),
    ),
    _hs(
        "hs256-pem-pkcs1",
        _CONFUSION,
        "HS256 keyed with the RSA public key, PKCS#1 PEM",
        lambda k: (k.rsa_kid, public_form(k, k.rsa_kid, Encoding.PEM, PublicFormat.PKCS1)),
    ),
    _hs(
        "hs256-der",
        _CONFUSION,
        "HS256 keyed with the RSA public key, DER",
        lambda k: (
            k.rsa_kid,
            public_form(k, k.rsa_kid, Encoding.DER, PublicFormat.SubjectPublicKeyInfo),
        ),
    ),
    _hs(
        "hs256-jwk",
        _CONFUSION,
        "HS256 keyed with the published JWK JSON",
        lambda k: (k.rsa_kid, json.dumps(k.public_jwk(k.rsa_kid)).encode()),
    ),
    _hs(
        "hs256-ssh-rsa",
        _CONFUSION,
        "HS256 keyed with the RSA key as `ssh-rsa`",
        lambda k: (k.rsa_kid, public_form(k, k.rsa_kid, Encoding.OpenSSH, PublicFormat.OpenSSH)),
    ),
    _hs(
        "hs256-ecdsa-sha2",
        _CONFUSION,
        "HS256 keyed with the P-256 key as `ecdsa-sha2-nistp256`",
        lambda k: ("ec256", public_form(k, "ec256", Encoding.OpenSSH, PublicFormat.OpenSSH)),
    ),
    _hs(
        "hs256-ssh-ed25519",
        _CONFUSION,
        "HS256 keyed with the Ed25519 key as `ssh-ed25519`",
        lambda k: ("ed", public_form(k, "ed", Encoding.OpenSSH, PublicFormat.OpenSSH)),
    ),
    _hs(
        "hs256-certificate",
        _CONFUSION,
        "HS256 keyed with the key's x5c certificate (PEM)",
        lambda k: (k.rsa_kid, certificate_pem(k, k.rsa_kid)),
    ),
    _hs(
        "hs384-pem",
        _CONFUSION,
        "HS384 keyed with the RSA public key, PEM",
        lambda k: (
            k.rsa_kid,
            public_form(k, k.rsa_kid, Encoding.PEM, PublicFormat.SubjectPublicKeyInfo),
        ),
        alg="HS384",
    ),
    _hs(
        "hs512-ec-pem",
        _CONFUSION,
        "HS512 keyed with the P-256 public key, PEM",
        lambda k: (
            "ec256",
            public_form(k, "ec256", Encoding.PEM, PublicFormat.SubjectPublicKeyInfo),
        ),
        alg="HS512",
    ),
    Attack(
        "rs256-signature-rs384-header",
        "algorithm",
        "RFC 8725 §3.1 (algorithm substitution)",
        "Valid RS256 token relabelled RS384",
        lambda k: bearer(with_header(k.valid(), alg="RS384")),
        invalid("bad_signature"),
    ),
    Attack(
        "rs256-signature-ps256-header",
        "algorithm",
        "RFC 8725 §3.1 (algorithm substitution)",
        "Valid RS256 token relabelled PS256",
        lambda k: bearer(with_header(k.valid(), alg="PS256")),
        invalid("bad_signature"),
    ),
    Attack(
        "jwk-alg-binding",
        "algorithm",
        "RFC 7517 §4.4",
        "RS384 genuinely signed by a key whose JWK says `alg: RS256`",
        lambda k: bearer(k.signed(k.header("rsa-bound", "RS384"))),
        invalid("algorithm_not_allowed"),
    ),
    Attack(
        "es256-signed-by-p384",
        "algorithm",
        "RFC 7518 §3.4",
        "ES256 header on the P-256 kid, signature made with a P-384 key",
        lambda k: bearer(k.signed(k.header("ec256", "ES256"), key=k.private("ec384"), alg="ES256")),
        invalid("bad_signature"),
    ),
    Attack(
        "es256-on-p384-key",
        "algorithm",
        "RFC 7518 §3.4 (curve binds the algorithm)",
        "ES256 with the P-384 key's kid (signed by that key)",
        lambda k: bearer(k.signed(k.header("ec384", "ES256"), key=k.private("ec384"), alg="ES256")),
        invalid("algorithm_not_allowed"),
    ),
    Attack(
        "es256-on-rsa-key",
        "algorithm",
        "RFC 8725 §3.1",
        "ES256 with the RSA key's kid",
        lambda k: bearer(k.signed(k.header(alg="ES256"), key=k.attacker_ec, alg="ES256")),
        invalid("algorithm_not_allowed"),
    ),
    Attack(
        "rs256-on-ec-key",
        "algorithm",
        "RFC 8725 §3.1",
        "RS256 with the P-256 key's kid",
        lambda k: bearer(k.signed(k.header("ec256", "RS256"), key=k.attacker_rsa, alg="RS256")),
        invalid("algorithm_not_allowed"),
    ),
    Attack(
        "eddsa-on-rsa-key",
        "algorithm",
        "RFC 8037 §3.1",
        "EdDSA with the RSA key's kid",
        lambda k: bearer(k.signed(k.header(alg="EdDSA"), key=k.private("ed"), alg="EdDSA")),
        invalid("algorithm_not_allowed"),
    ),
    Attack(
        "ecdsa-r-s-zero",
        "algorithm",
        "CVE-2022-21449 (psychic signatures)",
        "ES256 signature r = s = 0",
        lambda k: bearer(with_ec_signature(k, 0, 0)),
        invalid("bad_signature"),
    ),
    Attack(
        "ecdsa-r-zero",
        "algorithm",
        "CVE-2022-21449",
        "ES256 signature r = 0 with a genuine s",
        lambda k: bearer(ec_resigned(k, lambda sig: bytes(32) + sig[32:])),
        invalid("bad_signature"),
    ),
    Attack(
        "ecdsa-r-s-order",
        "algorithm",
        "CVE-2022-21449; SEC 1 §4.1.4 (range check)",
        "ES256 signature r = s = n (the curve order)",
        lambda k: bearer(with_ec_signature(k, P256_ORDER, P256_ORDER)),
        invalid("bad_signature"),
    ),
    Attack(
        "ecdsa-r-s-all-ones",
        "algorithm",
        "SEC 1 §4.1.4",
        "ES256 signature r = s = 2^256 - 1 (above n)",
        lambda k: bearer(with_ec_signature(k, 2**256 - 1, 2**256 - 1)),
        invalid("bad_signature"),
    ),
    Attack(
        "es384-r-s-zero",
        "algorithm",
        "CVE-2022-21449",
        "ES384 signature r = s = 0 on the P-384 key",
        lambda k: bearer(k.resign(ec_token(k, "ec384", "ES384"), bytes(96))),
        invalid("bad_signature"),
    ),
    Attack(
        "ecdsa-der-signature",
        "algorithm",
        "RFC 7518 §3.4 (raw r || s, not DER)",
        "A genuine ES256 signature in DER encoding",
        lambda k: bearer(ecdsa_der(k)),
        invalid("bad_signature"),
    ),
    Attack(
        "ecdsa-63-bytes",
        "algorithm",
        "RFC 7518 §3.4 (exactly 64 bytes)",
        "Genuine ES256 signature with its last byte cut",
        lambda k: bearer(ec_resigned(k, lambda sig: sig[:63])),
        invalid("bad_signature"),
    ),
    Attack(
        "ecdsa-65-bytes",
        "algorithm",
        "RFC 7518 §3.4 (exactly 64 bytes)",
        "Genuine ES256 signature with a leading zero byte",
        lambda k: bearer(ec_resigned(k, lambda sig: b"\0" + sig)),
        invalid("bad_signature"),
    ),
    Attack(
        "rsa-signature-257-bytes",
        "algorithm",
        "RFC 8017 §8.2.2 step 1 (length check)",
        "Genuine RS256 signature with a leading zero byte",
        lambda k: bearer(resigned(k.valid(), lambda sig: b"\0" + sig)),
        invalid("bad_signature"),
    ),
    Attack(
        "rsa-signature-255-bytes",
        "algorithm",
        "RFC 8017 §8.2.2 step 1",
        "Genuine RS256 signature with its last byte cut",
        lambda k: bearer(resigned(k.valid(), lambda sig: sig[:255])),
        invalid("bad_signature"),
    ),
    Attack(
        "pss-signature-leading-zero-dropped",
        "algorithm",
        "RFC 8017 §8.1.2 (signature is exactly k octets)",
        "Genuine PS256 signature with its leading zero octet dropped (255 bytes)",
        lambda k: bearer(pss_without_leading_zero(k)),
        invalid("bad_signature"),
    ),
    Attack(
        "rsa-signature-zero",
        "algorithm",
        "RFC 8017 §5.2.2 (s in [0, n-1])",
        "RS256 signature of 256 zero bytes",
        lambda k: bearer(k.resign(k.valid(), bytes(256))),
        invalid("bad_signature"),
    ),
    Attack(
        "rsa-signature-modulus",
        "algorithm",
        "RFC 8017 §5.2.2 (s < n)",
        "RS256 signature equal to the modulus n",
        lambda k: bearer(
            k.resign(k.valid(), rsa_public(k).public_numbers().n.to_bytes(256, "big"))
        ),
        invalid("bad_signature"),
    ),
    Attack(
        "eddsa-zero",
        "algorithm",
        "RFC 8032 §5.1.7",
        "EdDSA signature of 64 zero bytes",
        lambda k: bearer(k.resign(ec_token(k, "ed", "EdDSA"), bytes(64))),
        invalid("bad_signature"),
    ),
    Attack(
        "eddsa-63-bytes",
        "algorithm",
        "RFC 8032 §5.1.7",
        "Genuine EdDSA signature with its last byte cut",
        lambda k: bearer(ec_resigned(k, lambda sig: sig[:63], "ed", "EdDSA")),
        invalid("bad_signature"),
    ),
    Attack(
        "alg-lowercase",
        "algorithm",
        "RFC 7515 §4.1.1 (case-sensitive)",
        '`"alg":"rs256"`, otherwise genuine',
        lambda k: bearer(with_header(k.valid(), alg="rs256")),
        invalid("algorithm_not_allowed"),
    ),
    Attack(
        "alg-trailing-space",
        "algorithm",
        "RFC 7515 §4.1.1",
        '`"alg":"RS256 "`, otherwise genuine',
        lambda k: bearer(with_header(k.valid(), alg="RS256 ")),
        invalid("algorithm_not_allowed"),
    ),
    Attack(
        "alg-es256k",
        "algorithm",
        "RFC 8812 §3.2",
        "ES256K (secp256k1), not allowed",
        lambda k: bearer(with_header(ec_token(k), alg="ES256K")),
        invalid("algorithm_not_allowed"),
    ),
    Attack(
        "alg-pbes2-huge-p2c",
        "algorithm",
        "CVE-2023-51775 (PBES2 p2c DoS)",
        "`PBES2-HS256+A128KW` with `p2c` = 2^31 in a JWS header",
        lambda k: bearer(with_header(k.valid(), alg="PBES2-HS256+A128KW", p2c=2**31, p2s="AAAA")),
        invalid("algorithm_not_allowed"),
    ),
]

_FOREIGN: Final = "https://attacker.test/jwks.json"

_KEY_SOURCE: Final = [
    Attack(
        "jku-attacker-known-kid",
        "key-source",
        "RFC 7515 §4.1.2; jwt_tool -X s",
        "`jku` to the attacker's JWKS, known kid, attacker's signature",
        lambda k: bearer(k.signed(k.header(jku=_FOREIGN), key=k.attacker_rsa)),
        invalid("bad_signature"),
    ),
    Attack(
        "jku-attacker-new-kid",
        "key-source",
        "RFC 7515 §4.1.2; jwt_tool -X s",
        "`jku` to the attacker's JWKS with the attacker's own kid",
        lambda k: bearer(k.signed(k.header("attacker-key", jku=_FOREIGN), key=k.attacker_rsa)),
        invalid("unknown_key"),
    ),
    Attack(
        "jku-loopback-ssrf",
        "key-source",
        "RFC 8725 §3.10 (SSRF)",
        "`jku` pointing at a loopback service",
        lambda k: bearer(
            k.signed(k.header("ssrf", jku="http://127.0.0.1:2375/v1/keys"), key=k.attacker_rsa)
        ),
        invalid("unknown_key"),
    ),
    Attack(
        "jku-trusted-host-other-path",
        "key-source",
        "RFC 7515 §4.1.2 (open redirect)",
        "`jku` on the issuer's own host but another path",
        lambda k: bearer(
            k.signed(
                k.header(jku="https://login.tokenguard.test/redirect?to=" + _FOREIGN),
                key=k.attacker_rsa,
            )
        ),
        invalid("bad_signature"),
    ),
    Attack(
        "x5u-attacker",
        "key-source",
        "RFC 7515 §4.1.5",
        "`x5u` to the attacker's certificate",
        lambda k: bearer(
            k.signed(k.header(x5u="https://attacker.test/cert.pem"), key=k.attacker_rsa)
        ),
        invalid("bad_signature"),
    ),
    Attack(
        "jwk-embedded-known-kid",
        "key-source",
        "CVE-2018-0114; jwt_tool -X i",
        "Attacker's public key embedded as `jwk`, known kid",
        lambda k: bearer(
            k.signed(
                k.header(jwk=json.loads(_attacker_jwk(k))),
                key=k.attacker_rsa,
            )
        ),
        invalid("bad_signature"),
    ),
    Attack(
        "jwk-embedded-no-kid",
        "key-source",
        "CVE-2018-0114; jwt_tool -X i",
        "Attacker's public key embedded as `jwk`, no kid",
        lambda k: bearer(
            k.signed(without_kid(k.header(jwk=json.loads(_attacker_jwk(k)))), key=k.attacker_rsa)
        ),
        invalid("unknown_key"),
    ),
    Attack(
        "x5c-attacker-chain",
        "key-source",
        "RFC 7515 §4.1.6",
        "Attacker's self-signed certificate as `x5c`",
        lambda k: bearer(
            k.signed(k.header(x5c=k.public_jwk(k.rsa_kid)["x5c"]), key=k.attacker_rsa)
        ),
        invalid("bad_signature"),
    ),
    Attack(
        "key-of-other-issuer",
        "key-source",
        "RFC 8725 §3.8 (keys belong to one issuer)",
        "Main issuer's claims signed with another trusted issuer's key and kid",
        lambda k: bearer(
            k.signed(
                k.header(k.generic.signing_kid),
                key=k.private(k.generic.signing_kid, k.generic),
            )
        ),
        invalid("unknown_key"),
    ),
    Attack(
        "consumers-key-work-token",
        "key-source",
        "Microsoft.IdentityModel IDX40005 (signing key issuer)",
        "Work-tenant token signed by a personal-account key of the same key set",
        lambda k: bearer(template_token(k, tid=k.multi.tenant_id, kid="consumers")),
        invalid("key_issuer_mismatch"),
    ),
    Attack(
        "key-of-another-cloud",
        "key-source",
        "Microsoft.IdentityModel IDX40012 (cloud instance)",
        "Token signed by a `microsoftonline.us` key of the set (cloud instance checked)",
        lambda k: bearer(template_token(k, tid=k.multi.tenant_id, kid="us-cloud")),
        invalid("unknown_key"),
    ),
]


def _attacker_jwk(k: Kit) -> str:
    from jwt.algorithms import RSAAlgorithm

    return RSAAlgorithm.to_jwk(k.attacker_rsa.public_key())


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


_KID: Final = [
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


def _claim_row(name: str, source: str, title: str, expect: Expect, **claims: Any) -> Attack:
    return Attack(name, "claims", source, title, lambda k: bearer(k.valid(**claims)), expect)


_EXP: Final = "RFC 7519 §4.1.4"
_NBF: Final = "RFC 7519 §4.1.5"
_IAT: Final = "RFC 7519 §4.1.6"
_ISS: Final = "RFC 7519 §4.1.1; RFC 8725 §3.8"
_AUD: Final = "RFC 7519 §4.1.3; RFC 8725 §3.9"


def _iss_row(
    name: str, title: str, make_iss: Callable[[Kit], Any], reason: str = "wrong_issuer"
) -> Attack:
    return Attack(
        name, "claims", _ISS, title, lambda k: bearer(k.valid(iss=make_iss(k))), invalid(reason)
    )


_CLAIMS: Final = [
    Attack(
        "exp-missing",
        "claims",
        _EXP,
        "No `exp`",
        lambda k: bearer(k.valid(exp=None)),
        invalid("missing_claim"),
    ),
    _claim_row(
        "exp-string", _EXP, "`exp` is a numeric string", invalid("invalid_claim"), exp="9999999999"
    ),
    _claim_row("exp-boolean", _EXP, "`exp` is `true`", invalid("invalid_claim"), exp=True),
    _claim_row("exp-array", _EXP, "`exp` is an array", invalid("invalid_claim"), exp=[NOW + 3600]),
    _claim_row("exp-object", _EXP, "`exp` is an object", invalid("invalid_claim"), exp={"$gt": 0}),
    _claim_row("exp-past", _EXP, "Expired an hour ago", invalid("expired"), exp=NOW - 3600),
    _claim_row(
        "exp-leeway-edge",
        _EXP,
        "`exp` exactly `leeway` (60 s) ago",
        invalid("expired"),
        exp=NOW - 60,
    ),
    _claim_row(
        "exp-inside-leeway",
        _EXP,
        "Control: `exp` 59 s ago (inside the leeway)",
        ACCEPTED,
        exp=NOW - 59,
    ),
    _claim_row("nbf-future", _NBF, "`nbf` 61 s ahead", invalid("not_yet_valid"), nbf=NOW + 61),
    _claim_row(
        "nbf-inside-leeway",
        _NBF,
        "Control: `nbf` 60 s ahead (inside the leeway)",
        ACCEPTED,
        nbf=NOW + 60,
    ),
    _claim_row("nbf-string", _NBF, "`nbf` is a string", invalid("invalid_claim"), nbf=str(NOW)),
    _claim_row("nbf-boolean", _NBF, "`nbf` is `false`", invalid("invalid_claim"), nbf=False),
    _claim_row(
        "iat-future", _IAT, "`iat` an hour ahead", invalid("issued_in_future"), iat=NOW + 3600
    ),
    _claim_row("iat-string", _IAT, "`iat` is a string", invalid("invalid_claim"), iat=str(NOW)),
    Attack(
        "iss-missing",
        "claims",
        _ISS,
        "No `iss`",
        lambda k: bearer(k.valid(iss=None)),
        invalid("missing_claim"),
    ),
    _iss_row(
        "iss-prefix",
        "`iss` is a prefix of the trusted issuer",
        lambda k: "https://sts.windows.net/",
    ),
    _iss_row(
        "iss-superstring", "`iss` extends the trusted issuer", lambda k: k.main.issuer + "evil/"
    ),
    _iss_row(
        "iss-substring", "`iss` is a substring of the trusted issuer", lambda k: k.main.issuer[8:]
    ),
    _iss_row("iss-upper-case", "`iss` in upper case", lambda k: k.main.issuer.upper()),
    _iss_row(
        "iss-no-trailing-slash",
        "`iss` without its trailing slash",
        lambda k: k.main.issuer.rstrip("/"),
    ),
    _iss_row(
        "iss-double-slash", "`iss` with a second trailing slash", lambda k: k.main.issuer + "/"
    ),
    _iss_row(
        "iss-http",
        "`iss` with http instead of https",
        lambda k: k.main.issuer.replace("https", "http"),
    ),
    _iss_row(
        "iss-other-tenant",
        "`iss` of another tenant",
        lambda k: f"https://sts.windows.net/{k.other_tenant}/",
    ),
    _iss_row("iss-not-string", "`iss` is an array", lambda k: [k.main.issuer], "malformed"),
    Attack(
        "template-tenant-not-allowed",
        "claims",
        "RFC 8725 §3.8 (multi-tenant issuers)",
        "Template issuer, consistent `iss`/`tid` of a tenant outside the allow-list",
        lambda k: bearer(template_token(k, tid="11111111-2222-3333-4444-555555555555")),
        invalid("wrong_tenant"),
    ),
    Attack(
        "template-tid-mismatch",
        "claims",
        "RFC 8725 §3.8",
        "Template issuer, `iss` of one allowed tenant, `tid` of another",
        lambda k: bearer(
            template_token(k, tid=k.other_tenant, iss=template_issuer(k.multi.tenant_id))
        ),
        invalid("wrong_issuer"),
    ),
    Attack(
        "template-tid-traversal",
        "claims",
        "RFC 8725 §3.8",
        "Template issuer, `tid` `../x` filling the `iss` template",
        lambda k: bearer(template_token(k, tid="../x", iss=template_issuer("../x"))),
        invalid("wrong_issuer"),
    ),
    Attack(
        "template-literal-placeholder",
        "claims",
        "RFC 8725 §3.8",
        "`iss` is the template itself, `{tenantid}` unfilled",
        lambda k: bearer(template_token(k, tid=k.multi.tenant_id, iss=k.multi.issuer)),
        invalid("wrong_issuer"),
    ),
    Attack(
        "template-allowed-tenant",
        "claims",
        "RFC 8725 §3.8",
        "Control: template issuer, allowed tenant",
        lambda k: bearer(template_token(k, tid=k.other_tenant)),
        ACCEPTED,
    ),
    _claim_row(
        "aud-mismatch",
        _AUD,
        "Token for another resource",
        invalid("wrong_audience"),
        aud="https://management.azure.com",
    ),
    Attack(
        "aud-missing",
        "claims",
        _AUD,
        "No `aud`",
        lambda k: bearer(k.valid(aud=None)),
        invalid("missing_claim"),
    ),
    _claim_row(
        "aud-array-no-match",
        _AUD,
        "`aud` array without our audience",
        invalid("wrong_audience"),
        aud=["https://a.test", "https://b.test"],
    ),
    _claim_row(
        "aud-array-match",
        _AUD,
        "Control: `aud` array holding our audience",
        ACCEPTED,
        aud=["https://a.test", VAULT],
    ),
    _claim_row(
        "aud-array-non-string",
        _AUD,
        "`aud` array with a number",
        invalid("invalid_claim"),
        aud=[VAULT, 1],
    ),
    _claim_row("aud-number", _AUD, "`aud` is a number", invalid("invalid_claim"), aud=1),
    _claim_row(
        "aud-upper-case", _AUD, "`aud` in upper case", invalid("wrong_audience"), aud=VAULT.upper()
    ),
    _claim_row(
        "aud-trailing-slash",
        _AUD,
        "`aud` with an extra trailing slash",
        invalid("wrong_audience"),
        aud=VAULT + "/",
    ),
    _claim_row(
        "aud-no-trailing-slash",
        _AUD,
        "`aud` without its trailing slash",
        invalid("wrong_audience"),
        aud=STORAGE.rstrip("/"),
    ),
    _claim_row("aud-empty-array", _AUD, "`aud` is `[]`", invalid("wrong_audience"), aud=[]),
    _claim_row(
        "aud-of-other-issuer",
        "RFC 8725 §3.9 (audiences are per issuer)",
        "Main issuer token for another issuer's audience",
        invalid("wrong_audience"),
        aud=GENERIC_AUDIENCE,
    ),
    _claim_row(
        "id-token-nonce",
        "OpenID Connect Core §2; RFC 8725 §2.8",
        "ID token (`nonce`) presented as an access token",
        invalid("wrong_type"),
        nonce="n-0S6_WzA2Mj",
    ),
    _claim_row(
        "id-token-at-hash",
        "OpenID Connect Core §3.1.3.6",
        "ID token (`at_hash`) presented as an access token",
        invalid("wrong_type"),
        at_hash="77QmUPtjPfzWtF2AnpK9RQ",
    ),
    _claim_row(
        "no-permissions",
        "Microsoft.Identity.Web IDW10201",
        "Valid token with neither `roles` nor `scp`",
        invalid("no_permissions"),
        roles=None,
    ),
    _claim_row(
        "no-permissions-empty-values",
        "Microsoft.Identity.Web IDW10201",
        'Valid token whose `roles` is `[""]` and `scp` is blank',
        invalid("no_permissions"),
        roles=[""],
        scp=" ",
    ),
    Attack(
        "rfc9068-typ-jwt",
        "claims",
        "RFC 9068 §4; RFC 8725 §3.11",
        "RFC 9068 issuer: `typ: JWT` instead of `at+jwt`",
        lambda k: bearer(generic_token(k, "JWT")),
        invalid("wrong_type"),
    ),
    Attack(
        "rfc9068-typ-missing",
        "claims",
        "RFC 9068 §4",
        "RFC 9068 issuer: no `typ`",
        lambda k: bearer(generic_token(k, None)),
        invalid("wrong_type"),
    ),
    Attack(
        "rfc9068-typ-not-string",
        "claims",
        "RFC 9068 §4",
        'RFC 9068 issuer: `typ: ["at+jwt"]`',
        lambda k: bearer(generic_token(k, ["at+jwt"])),
        invalid("wrong_type"),
    ),
    Attack(
        "rfc9068-typ-at-jwt",
        "claims",
        "RFC 9068 §2.1",
        "Control: RFC 9068 issuer, `typ: application/at+jwt`",
        lambda k: bearer(generic_token(k, "application/at+jwt")),
        ACCEPTED,
    ),
    Attack(
        "crit-unknown",
        "claims",
        "RFC 7515 §4.1.11",
        "`crit` naming an extension we do not implement (signed)",
        lambda k: bearer(k.signed(k.header(crit=["exp"], exp=NOW + 3600))),
        invalid("unsupported_critical"),
    ),
    Attack(
        "crit-b64-false",
        "claims",
        "RFC 7797 §6",
        "Unencoded payload option `b64: false` under `crit` (signed)",
        lambda k: bearer(k.signed(k.header(crit=["b64"], b64=False))),
        invalid("unsupported_critical"),
    ),
]


def cached_then(k: Kit, change: Callable[[str], str]) -> Probe:
    """Validate a genuine token (so it is cached), then send ``change(token)``."""
    token = k.valid()
    return Probe(change(token), prime=(token,))


_CACHE: Final = [
    Attack(
        "cache-same-claims-other-signature",
        "cache",
        "RFC 7515 §5.2 (cache must bind the signature)",
        "A cached token's header and payload with a zeroed signature",
        lambda k: cached_then(k, lambda t: k.resign(t, bytes(256))),
        invalid("bad_signature"),
    ),
    Attack(
        "cache-same-claims-stripped-signature",
        "cache",
        "jwt_tool -X n against a warm cache",
        "A cached token with its signature stripped",
        lambda k: cached_then(k, lambda t: t.rsplit(".", 1)[0] + "."),
        invalid("malformed"),
    ),
    Attack(
        "cache-signature-respelt",
        "cache",
        "RFC 4648 §3.5",
        "A cached token whose signature is re-spelt with stray low bits",
        lambda k: cached_then(k, lambda t: t[:-1] + chr(ord(t[-1]) ^ 1)),
        invalid("malformed"),
    ),
    Attack(
        "cache-header-reused-other-payload",
        "cache",
        "RFC 7515 §5.2",
        "A cached token's header (memoised) over a tampered payload and its signature",
        lambda k: cached_then(
            k,
            lambda t: ".".join(
                [
                    segments(t)[0],
                    b64(json.dumps(k.claims(roles=["Admin"])).encode()),
                    segments(t)[2],
                ]
            ),
        ),
        invalid("bad_signature"),
    ),
    Attack(
        "cache-alg-swapped",
        "cache",
        "RFC 8725 §3.1",
        "A cached token relabelled PS256 (same payload and signature)",
        lambda k: cached_then(k, lambda t: with_header(t, alg="PS256")),
        invalid("bad_signature"),
    ),
    Attack(
        "cache-exact-replay",
        "cache",
        "RFC 6750 §5.3 (replay is the bearer model)",
        "Control: the cached token itself is accepted again",
        lambda k: cached_then(k, lambda t: t),
        ACCEPTED,
    ),
]

_MIB: Final = 1024 * 1024

_DOS: Final = [
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

ATTACKS: Final[tuple[Attack, ...]] = (
    *_REQUEST,
    *_STRUCTURE,
    *_ALGORITHM,
    *_KEY_SOURCE,
    *_KID,
    *_CLAIMS,
    *_CACHE,
    *_DOS,
)


def markdown_table() -> str:
    """The catalogue as a Markdown table (SECURITY.md carries it)."""
    lines = ["| # | id | area | attack | source | expected |", "|---|---|---|---|---|---|"]
    for number, attack in enumerate(ATTACKS, 1):
        lines.append(
            f"| {number} | `{attack.id}` | {attack.area} | {attack.title} | {attack.source} "
            f"| {attack.expect} |"
        )
    return "\n".join(lines)


BEGIN: Final = "<!-- attack-catalogue:begin (python -m tests.security.catalogue --write) -->"
END: Final = "<!-- attack-catalogue:end -->"


def document_block(text: str) -> str:
    """The catalogue part of a document (between :data:`BEGIN` and :data:`END`)."""
    start = text.index(BEGIN) + len(BEGIN)
    return text[start : text.index(END, start)].strip("\n")


def main(argv: list[str]) -> None:
    """Print the table, or with ``--write`` refresh it in SECURITY.md."""
    if argv[1:] != ["--write"]:
        print(markdown_table())
        return
    path = Path(__file__).resolve().parents[2] / "SECURITY.md"
    text = path.read_text(encoding="utf-8")
    start = text.index(BEGIN) + len(BEGIN)
    end = text.index(END, start)
    path.write_text(f"{text[:start]}\n{markdown_table()}\n{text[end:]}", encoding="utf-8")


if __name__ == "__main__":
    main(sys.argv)
