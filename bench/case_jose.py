"""Cases 1-5: the signature floor, PyJWT, and ``TokenValidator.validate`` per algorithm."""

from __future__ import annotations

import base64
from collections.abc import Callable

import jwt
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from tokenguard import TokenValidator

from ._context import Bench
from ._measure import Subject, best_rates, progress
from ._report import Row
from ._tokens import AUDIENCE

__all__ = ["run"]


def _unb64(segment: str) -> bytes:
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


def floor_batch(public_key: object, tokens: list[str]) -> Callable[[], None]:
    """Raw ``cryptography`` verification of each token's signing input: the floor.

    Inputs are split and decoded beforehand (ES256 signatures converted to DER), so
    the loop times nothing but the library call that every validator has to make.
    """
    pairs = []
    for token in tokens:
        h64, p64, s64 = token.split(".")
        pairs.append(((h64 + "." + p64).encode("ascii"), _unb64(s64)))
    if isinstance(public_key, rsa.RSAPublicKey):
        rsa_key, pkcs1, sha256 = public_key, padding.PKCS1v15(), hashes.SHA256()

        def verify_rsa() -> None:
            for data, signature in pairs:
                rsa_key.verify(signature, data, pkcs1, sha256)

        return verify_rsa
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        ec_key, ecdsa = public_key, ec.ECDSA(hashes.SHA256())
        der = [
            (data, encode_dss_signature(int.from_bytes(s[:32]), int.from_bytes(s[32:])))
            for data, s in pairs
        ]

        def verify_ec() -> None:
            for data, signature in der:
                ec_key.verify(signature, data, ecdsa)

        return verify_ec
    assert isinstance(public_key, ed25519.Ed25519PublicKey)
    ed_key = public_key

    def verify_ed() -> None:
        for data, signature in pairs:
            ed_key.verify(signature, data)

    return verify_ed


def validate_subject(name: str, validator: TokenValidator, tokens: list[str]) -> Subject:
    """``validate`` over ``tokens``; the cache is emptied before each round, so unique
    tokens never hit it (and a repeated token hits it all but once)."""

    async def batch() -> None:
        validate = validator.validate
        for token in tokens:
            await validate(token)

    return Subject(name, batch, len(tokens), setup=validator.cache.clear)


async def _rs256(bench: Bench) -> list[Row]:
    tokens = bench.unique("RS256")
    issuer = bench.rsa
    public_key = issuer.signing_key.private_key.public_key()
    unique = bench.validator()
    repeated = bench.validator()
    await unique.warm_up()
    await repeated.warm_up()

    def pyjwt() -> None:
        for token in tokens:
            jwt.decode(
                token, public_key, algorithms=["RS256"], audience=AUDIENCE, issuer=issuer.issuer
            )

    subjects = [
        Subject("floor", floor_batch(public_key, tokens), len(tokens)),
        Subject("pyjwt", pyjwt, len(tokens)),
        validate_subject("unique", unique, tokens),
        validate_subject("repeated", repeated, [bench.repeated] * bench.settings.repeat),
    ]
    progress(f"cases 1-4: RS256, {len(tokens)} unique tokens, {bench.settings.rounds} rounds")
    rates = await best_rates(subjects, bench.settings.rounds)
    if unique.cache.hits:
        raise AssertionError("unique tokens hit the cache: the case measures the wrong thing")
    floor = rates["floor"]
    return [
        Row("1", "RS256 raw verify (cryptography): floor", floor, "ops/s"),
        Row(
            "2",
            "PyJWT jwt.decode (iss, aud, exp, nbf, iat), key given",
            rates["pyjwt"],
            "ops/s",
            "floor",
            floor,
            notes="issue: about 0.2x",
        ),
        Row(
            "3",
            "TokenValidator.validate, unique tokens (cache never hits)",
            rates["unique"],
            "ops/s",
            "floor",
            floor,
            ">=",
            UNIQUE_TARGET,
            extra={"cache_hits": unique.cache.hits},
        ),
        Row(
            "4",
            "TokenValidator.validate, repeated token",
            rates["repeated"],
            "ops/s",
            "floor",
            floor,
            ">=",
            10.0,
        ),
    ]


#: Unique tokens against the raw signature check (issue #13: what pure Python reaches
#: with the C-coded base64/JSON; issue #5's 0.6x needed compiled code, see bench/README).
UNIQUE_TARGET = 0.48


async def _variant(bench: Bench, alg: str, first: str) -> list[Row]:
    tokens = bench.unique(alg)
    public_key = bench.issuers[alg].signing_key.private_key.public_key()
    validator = bench.validator(alg)
    await validator.warm_up()
    subjects = [
        Subject("floor", floor_batch(public_key, tokens), len(tokens)),
        validate_subject("unique", validator, tokens),
    ]
    progress(f"case 5: {alg}")
    rates = await best_rates(subjects, bench.settings.rounds)
    second = chr(ord(first) + 1)
    return [
        Row(f"5{first}", f"{alg} raw verify (cryptography): floor", rates["floor"], "ops/s"),
        Row(
            f"5{second}",
            f"{alg} TokenValidator.validate, unique tokens",
            rates["unique"],
            "ops/s",
            f"{alg} floor",
            rates["floor"],
            ">=",
            UNIQUE_TARGET,
            notes="RS256's target, applied to the variant",
        ),
    ]


async def run(bench: Bench) -> list[Row]:
    """Cases 1-4 interleaved in one set of rounds, then the ES256 and EdDSA variants."""
    rows = await _rs256(bench)
    rows += await _variant(bench, "ES256", "a")
    rows += await _variant(bench, "EdDSA", "c")
    return rows
