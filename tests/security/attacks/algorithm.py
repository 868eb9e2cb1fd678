"""Algorithm attacks: ``none``, HMAC confusion with the published keys, wrong or
mismatched algorithms and malformed RSA, EC and EdDSA signatures.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import Final

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from ..kit import Kit, b64, compact
from .rows import Attack, bearer, invalid, segments, with_header

P256_ORDER: Final = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551


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


def resigned(token: str, change: Callable[[bytes], bytes]) -> str:
    """The token with its own genuine signature changed by ``change``."""
    head, _ = token.rsplit(".", 1)
    return head + "." + b64(change(raw_signature(token)))


def ec_resigned(
    k: Kit, change: Callable[[bytes], bytes], kid: str = "ec256", alg: str = "ES256"
) -> str:
    """A genuine EC/EdDSA token whose signature is changed by ``change``."""
    return resigned(ec_token(k, kid, alg), change)


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

ROWS: Final = [
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
