"""Public keys from JWKs, each bound to the algorithms its type allows, and the
signature check itself.

Key hygiene: only ``use == "sig"`` (or absent) keys with a string ``kid``; RSA keys
under 2048 or over 8192 bits, keys with private parts and unsupported types are skipped one by
one without failing the whole set. An RSA key verifies RS*/PS*, an EC key only the
ES algorithm of its curve, an Ed25519 key only EdDSA; a JWK ``alg`` narrows further.

Entra's members are kept on the key: ``issuer`` (whose tokens the key may sign, checked by
the validator) and ``cloud_instance_name`` (keys of another cloud are skipped when the
caller names the expected one). Either, present but not a string, skips the key.
``x5c``/``x5t`` are never a key source: the key is ``n``/``e`` (``x``/``y``) alone.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from dataclasses import KW_ONLY, dataclass, field
from typing import Any, Final

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm
from jwt.exceptions import InvalidKeyError

from ._algorithms import ALGORITHMS, algorithms_for_curve, algorithms_for_key_type

__all__ = ["MAX_RSA_BITS", "MIN_RSA_BITS", "VerificationKey", "load_jwks"]

logger = logging.getLogger("tokenguard")

MIN_RSA_BITS: Final = 2048
#: A bigger modulus makes every signature check of a token naming its kid dearer (the
#: cost grows with the square of the modulus size); issuers use 2048-4096.
MAX_RSA_BITS: Final = 8192
MAX_KID_LENGTH: Final = 256
_PRIVATE_MEMBERS: Final = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k"})
_PKCS1: Final = padding.PKCS1v15()
#: DER DigestInfo prefix for SHA-256 (RFC 8017 section 9.2, note 1).
_SHA256_DIGEST_INFO: Final = bytes.fromhex("3031300d060960864801650304020105000420")

Verifier = Callable[[bytes, bytes], None]


@dataclass(eq=False, repr=False, slots=True)
class VerificationKey:
    """One usable public key from a key set.

    ``alive`` turns false when a refresh drops the key, which also invalidates every
    cached token it verified.
    """

    kid: str
    kty: str
    public_key: Any
    algorithms: frozenset[str]
    _: KW_ONLY
    #: The JWK's ``issuer`` (Entra v2 sets; may hold ``{tenantid}``), else ``None``.
    issuer: str | None = None
    #: The JWK's ``cloud_instance_name`` (``microsoftonline.com``...), else ``None``.
    cloud_instance_name: str | None = None
    alive: bool = field(default=True, init=False)
    _verifiers: dict[str, Verifier] = field(init=False)

    def __post_init__(self) -> None:
        self._verifiers = {alg: _make_verifier(self.public_key, alg) for alg in self.algorithms}

    def verify(self, alg: str, signing_input: bytes, signature: bytes) -> bool:
        """True when ``signature`` is valid for ``signing_input`` under ``alg``."""
        verifier = self._verifiers.get(alg)
        if verifier is None:
            return False
        try:
            verifier(signature, signing_input)
        except (InvalidSignature, ValueError):
            return False
        return True

    def same_key(self, other: VerificationKey) -> bool:
        """Whether two entries hold the same public key with the same binding."""
        return (
            self.kty == other.kty
            and self.algorithms == other.algorithms
            and self.issuer == other.issuer
            and self.cloud_instance_name == other.cloud_instance_name
            and _public_numbers(self.public_key) == _public_numbers(other.public_key)
        )

    def __repr__(self) -> str:
        issuer = "" if self.issuer is None else f", issuer={self.issuer!r}"
        return (
            f"VerificationKey(kid={self.kid!r}, kty={self.kty!r}, "
            f"algs={sorted(self.algorithms)}{issuer})"
        )


def _public_numbers(key: Any) -> Any:
    if isinstance(key, ed25519.Ed25519PublicKey):
        return key.public_bytes_raw()
    return key.public_numbers()


def _rs256_verifier(key: rsa.RSAPublicKey) -> Verifier:
    size = (key.key_size + 7) // 8

    def verify_rs256(signature: bytes, data: bytes) -> None:
        # RFC 8017 8.2.2: undo the RSA operation (OpenSSL checks the 00 01 FF..FF 00
        # padding), then compare the whole DigestInfo we expect. Encoding and comparing,
        # never parsing, keeps this safe from signature-forgery tricks; it is the check
        # ``key.verify`` makes, without its per-call setup (bench/README.md: the gain).
        if len(signature) != size:
            raise InvalidSignature
        recovered = key.recover_data_from_signature(signature, _PKCS1, None)
        if recovered != _SHA256_DIGEST_INFO + hashlib.sha256(data).digest():
            raise InvalidSignature

    return verify_rs256


def _make_verifier(key: Any, alg: str) -> Verifier:
    spec = ALGORITHMS[alg]
    if spec.kty == "OKP":
        return key.verify  # type: ignore[no-any-return]
    if alg == "RS256":
        return _rs256_verifier(key)
    hash_cls = spec.hash
    if spec.padding == "pkcs1":
        h = hash_cls()

        def verify_rsa(signature: bytes, data: bytes) -> None:
            key.verify(signature, data, _PKCS1, h)

        return verify_rsa
    if spec.padding == "pss":
        h = hash_cls()
        pss = padding.PSS(mgf=padding.MGF1(hash_cls()), salt_length=h.digest_size)
        size = (key.key_size + 7) // 8

        def verify_pss(signature: bytes, data: bytes) -> None:
            # RFC 8017 8.1.2 step 1: exactly k octets. OpenSSL also takes a signature
            # whose leading zero octet was dropped: one valid token, two spellings.
            if len(signature) != size:
                raise InvalidSignature
            key.verify(signature, data, pss, h)

        return verify_pss
    # ES*: JOSE signatures are raw r || s of exactly twice the curve size (RFC 7518 3.4).
    size = (key.curve.key_size + 7) // 8
    ecdsa = ec.ECDSA(hash_cls())

    def verify_ec(signature: bytes, data: bytes) -> None:
        if len(signature) != 2 * size:
            raise InvalidSignature
        r = int.from_bytes(signature[:size], "big")
        s = int.from_bytes(signature[size:], "big")
        key.verify(encode_dss_signature(r, s), data, ecdsa)

    return verify_ec


def _skip(kid: object, why: str) -> None:
    logger.warning("skipping JWK", extra={"kid": str(kid)[:64], "why": why})


def _optional_text(jwk: dict[str, Any], name: str) -> tuple[bool, str | None]:
    """``(usable, value)`` of an optional string member: absent is usable, a non-string
    is not; a blank string counts as absent (as Microsoft.IdentityModel reads it)."""
    value = jwk.get(name)
    if value is None:
        return True, None
    if not isinstance(value, str):
        return False, None
    return True, value if value.strip() else None


class _Unusable(Exception):
    """Why a JWK is skipped (logged with its kid)."""


def _members(jwk: dict[str, Any], cloud_instance: str | None) -> tuple[str | None, str | None]:
    """The key's ``issuer`` and ``cloud_instance_name``, once its members allow its use."""
    usable, issuer = _optional_text(jwk, "issuer")
    if not usable:
        raise _Unusable("issuer is not a string")
    usable, cloud = _optional_text(jwk, "cloud_instance_name")
    if not usable:
        raise _Unusable("cloud_instance_name is not a string")
    if cloud_instance is not None and cloud is not None and cloud != cloud_instance:
        raise _Unusable(f"key of another cloud instance ({cloud[:64]})")
    use = jwk.get("use")
    if use is not None and use != "sig":
        raise _Unusable("use is not sig")
    ops = jwk.get("key_ops")
    if ops is not None and (not isinstance(ops, list) or "verify" not in ops):
        raise _Unusable("key_ops lacks verify")
    if _PRIVATE_MEMBERS & jwk.keys():
        raise _Unusable("private or symmetric key material")
    return issuer, cloud


def _public_key(kty: object, jwk: dict[str, Any]) -> tuple[Any, frozenset[str]]:
    """The public key and the algorithms its type (and size or curve) supports."""
    text = json.dumps(jwk)
    try:
        if kty == "RSA":
            key = RSAAlgorithm.from_jwk(text)
            if not isinstance(key, rsa.RSAPublicKey) or key.key_size < MIN_RSA_BITS:
                raise _Unusable("RSA key under 2048 bits")
            if key.key_size > MAX_RSA_BITS:
                raise _Unusable("RSA key over 8192 bits")
            return key, algorithms_for_key_type("RSA")
        if kty == "EC":
            ec_key = ECAlgorithm.from_jwk(text)
            curve = ec_key.curve.name if isinstance(ec_key, ec.EllipticCurvePublicKey) else None
            algs = algorithms_for_curve(curve)
            if not algs:
                raise _Unusable("unsupported curve")
            return ec_key, algs
        if kty == "OKP":
            okp_key = OKPAlgorithm.from_jwk(text)
            if not isinstance(okp_key, ed25519.Ed25519PublicKey):
                raise _Unusable("unsupported OKP curve")
            return okp_key, algorithms_for_key_type("OKP")
    except (InvalidKeyError, ValueError, TypeError, KeyError) as exc:
        raise _Unusable(f"unreadable key: {type(exc).__name__}") from None
    raise _Unusable("unsupported key type")


def _load_one(
    jwk: dict[str, Any], allowed: frozenset[str], cloud_instance: str | None = None
) -> VerificationKey | None:
    kid = jwk.get("kid")
    if not isinstance(kid, str) or not kid or len(kid) > MAX_KID_LENGTH:
        _skip(kid, "no usable kid")
        return None
    kty = jwk.get("kty")
    try:
        issuer, cloud = _members(jwk, cloud_instance)
        key, algs = _public_key(kty, jwk)
    except _Unusable as exc:
        _skip(kid, str(exc))
        return None
    jwk_alg = jwk.get("alg")
    if jwk_alg is not None:
        algs = algs & {jwk_alg} if isinstance(jwk_alg, str) else frozenset()
    algs = algs & allowed
    if not algs:
        _skip(kid, "no allowed algorithm fits this key")
        return None
    return VerificationKey(kid, str(kty), key, algs, issuer=issuer, cloud_instance_name=cloud)


def load_jwks(
    document: object,
    allowed: frozenset[str],
    max_keys: int,
    *,
    cloud_instance: str | None = None,
) -> dict[str, VerificationKey]:
    """Turn a JWKS document into usable keys by ``kid``.

    With ``cloud_instance``, keys whose ``cloud_instance_name`` names another cloud are
    skipped (keys without the member are kept). Raises ``ValueError`` when the document
    as a whole is unusable (wrong shape, too many keys, or not one usable key), so that
    it never replaces a good set.
    """
    if not isinstance(document, dict):
        raise ValueError("JWKS is not a JSON object")
    entries = document.get("keys")
    if not isinstance(entries, list):
        raise ValueError("JWKS 'keys' is not a list")
    if len(entries) > max_keys:
        raise ValueError(f"JWKS has {len(entries)} keys, more than the limit of {max_keys}")
    keys: dict[str, VerificationKey] = {}
    ambiguous: set[str] = set()
    for entry in entries:
        if not isinstance(entry, dict):
            continue
        key = _load_one(entry, allowed, cloud_instance)
        if key is None:
            continue
        if key.kid in keys:
            # Two different keys under one kid would make the kid ambiguous: drop both.
            _skip(key.kid, "duplicate kid")
            ambiguous.add(key.kid)
            continue
        keys[key.kid] = key
    for kid in ambiguous:
        del keys[kid]
    if not keys:
        raise ValueError("JWKS has no usable signing key")
    return keys
