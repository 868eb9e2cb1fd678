"""The JWS algorithms tokenguard knows, in one registry (as joserfc keeps one).

Per algorithm: the key type that verifies it, its hash, its RSA padding or its curve.
Configuration checks names against it, and the key loader and the signature check read
what a key of each type verifies and how. The HMAC algorithms are listed only so that
configuration can refuse them by name: issuer tokens are verified with public keys only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

from cryptography.hazmat.primitives import hashes

__all__ = [
    "ALGORITHMS",
    "ASYMMETRIC_ALGORITHMS",
    "SYMMETRIC_ALGORITHMS",
    "Algorithm",
    "algorithms_for_curve",
    "algorithms_for_key_type",
]


@dataclass(frozen=True, slots=True)
class Algorithm:
    """One JWS algorithm (RFC 7518 section 3, RFC 8037 for EdDSA)."""

    name: str
    #: The JWK ``kty`` of the keys that verify it (``oct`` for HMAC: never accepted).
    kty: Literal["RSA", "EC", "OKP", "oct"]
    #: The digest the signature covers (Ed25519 applies its SHA-512 itself, RFC 8032).
    hash: type[hashes.HashAlgorithm]
    #: RSA only: PKCS #1 v1.5 (RS*) or PSS (PS*).
    padding: Literal["pkcs1", "pss"] | None = None
    #: EC only: the one curve its keys are on (as ``cryptography`` names it), and that
    #: curve's JWK ``crv`` name.
    curve: str | None = None
    crv: str | None = None


ALGORITHMS: Final[dict[str, Algorithm]] = {
    a.name: a
    for a in (
        Algorithm("RS256", "RSA", hashes.SHA256, padding="pkcs1"),
        Algorithm("RS384", "RSA", hashes.SHA384, padding="pkcs1"),
        Algorithm("RS512", "RSA", hashes.SHA512, padding="pkcs1"),
        Algorithm("PS256", "RSA", hashes.SHA256, padding="pss"),
        Algorithm("PS384", "RSA", hashes.SHA384, padding="pss"),
        Algorithm("PS512", "RSA", hashes.SHA512, padding="pss"),
        Algorithm("ES256", "EC", hashes.SHA256, curve="secp256r1", crv="P-256"),
        Algorithm("ES384", "EC", hashes.SHA384, curve="secp384r1", crv="P-384"),
        Algorithm("ES512", "EC", hashes.SHA512, curve="secp521r1", crv="P-521"),
        Algorithm("EdDSA", "OKP", hashes.SHA512),
        Algorithm("HS256", "oct", hashes.SHA256),
        Algorithm("HS384", "oct", hashes.SHA384),
        Algorithm("HS512", "oct", hashes.SHA512),
    )
}
#: What an issuer may configure: the public-key algorithms.
ASYMMETRIC_ALGORITHMS: Final = frozenset(n for n, a in ALGORITHMS.items() if a.kty != "oct")
#: Named only to be refused with a reason of their own.
SYMMETRIC_ALGORITHMS: Final = frozenset(n for n, a in ALGORITHMS.items() if a.kty == "oct")

_BY_KEY_TYPE: Final = {
    kty: frozenset(n for n, a in ALGORITHMS.items() if a.kty == kty) for kty in ("RSA", "OKP")
}
_BY_CURVE: Final = {
    a.curve: frozenset({a.name}) for a in ALGORITHMS.values() if a.curve is not None
}


def algorithms_for_key_type(kty: Literal["RSA", "OKP"]) -> frozenset[str]:
    """The algorithms a key of type ``kty`` verifies (an EC key: see the curve)."""
    return _BY_KEY_TYPE[kty]


def algorithms_for_curve(curve_name: str | None) -> frozenset[str]:
    """The algorithm an EC key on ``curve_name`` (``secp256r1``...) verifies; none for a
    curve no JWS algorithm uses."""
    return _BY_CURVE.get(curve_name or "", frozenset())
