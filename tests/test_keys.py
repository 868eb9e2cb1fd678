"""JWK loading: key hygiene and algorithm binding."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed448, padding, rsa
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm

from tokenguard._keys import VerificationKey, load_jwks
from tokenguard.testing import LocalIssuer, SigningKey, generate_key

ALL = frozenset({"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA"})


def jwk_of(kty: str = "RSA", kid: str = "k1", **kwargs: Any) -> dict[str, Any]:
    key = generate_key(kty, **kwargs)  # type: ignore[arg-type]
    alg = {"RSA": "RS256", "EC": "ES256", "OKP": "EdDSA"}[kty]
    return SigningKey(kid, alg, key).public_jwk


@pytest.fixture(scope="module")
def rsa_jwk() -> dict[str, Any]:
    return jwk_of("RSA")


def test_rsa_key_binds_to_rsa_algorithms_only(rsa_jwk: dict[str, Any]) -> None:
    keys = load_jwks({"keys": [rsa_jwk]}, ALL, 10)
    assert keys["k1"].algorithms == {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"}
    assert keys["k1"].kty == "RSA"
    assert "k1" in repr(keys["k1"])


def test_ec_keys_bind_to_the_algorithm_of_their_curve() -> None:
    p256 = jwk_of("EC", kid="p256")
    p384 = jwk_of("EC", kid="p384", curve="P-384")
    keys = load_jwks({"keys": [p256, p384]}, ALL, 10)
    assert keys["p256"].algorithms == {"ES256"}
    assert keys["p384"].algorithms == {"ES384"}


def test_ed25519_binds_to_eddsa() -> None:
    keys = load_jwks({"keys": [jwk_of("OKP", kid="ed")]}, ALL, 10)
    assert keys["ed"].algorithms == {"EdDSA"}


def test_jwk_alg_narrows_the_binding(rsa_jwk: dict[str, Any]) -> None:
    keys = load_jwks({"keys": [{**rsa_jwk, "alg": "PS256"}]}, ALL, 10)
    assert keys["k1"].algorithms == {"PS256"}


def test_allowed_algorithms_narrow_the_binding(rsa_jwk: dict[str, Any]) -> None:
    keys = load_jwks({"keys": [rsa_jwk]}, frozenset({"RS256"}), 10)
    assert keys["k1"].algorithms == {"RS256"}


@pytest.mark.parametrize(
    ("change", "why"),
    [
        ({"use": "enc"}, "use is not sig"),
        ({"kid": None}, "no usable kid"),
        ({"kid": 7}, "no usable kid"),
        ({"kid": "x" * 300}, "no usable kid"),
        ({"key_ops": ["encrypt"]}, "key_ops lacks verify"),
        ({"d": "AQAB"}, "private or symmetric key material"),
        ({"kty": "oct", "k": "c2VjcmV0"}, "private or symmetric key material"),
        ({"kty": "oct"}, "unsupported key type"),
        ({"alg": "ES256"}, "no allowed algorithm fits this key"),
        ({"alg": 5}, "no allowed algorithm fits this key"),
        ({"n": "not-base64!"}, "unreadable key"),
        ({"issuer": 5}, "issuer is not a string"),
        ({"issuer": ["https://login.microsoftonline.com/{tenantid}/v2.0"]}, "issuer is not a"),
        ({"cloud_instance_name": {"name": "microsoftonline.com"}}, "cloud_instance_name is not"),
    ],
)
def test_bad_keys_are_skipped_one_by_one(
    rsa_jwk: dict[str, Any], change: dict[str, Any], why: str, caplog: pytest.LogCaptureFixture
) -> None:
    bad = {**rsa_jwk, **change, "kid": change.get("kid", "bad")}
    if change.get("kid", "") is None:
        del bad["kid"]
    good = {**rsa_jwk, "kid": "good"}
    with caplog.at_level(logging.WARNING, logger="tokenguard"):
        keys = load_jwks({"keys": [bad, good, "not-an-object"]}, ALL, 10)
    assert set(keys) == {"good"}
    assert any(getattr(r, "why", "").startswith(why) for r in caplog.records)


def test_small_rsa_keys_are_skipped() -> None:
    small = rsa.generate_private_key(public_exponent=65537, key_size=1024).public_key()
    jwk = {**json.loads(RSAAlgorithm.to_jwk(small)), "kid": "small"}
    with pytest.raises(ValueError, match="no usable signing key"):
        load_jwks({"keys": [jwk]}, ALL, 10)


def _modulus_jwk(bits: int, kid: str) -> dict[str, Any]:
    # Any odd number of the size will do: key loading checks no more than that.
    n = (1 << (bits - 1)) + 1
    return {
        **json.loads(RSAAlgorithm.to_jwk(rsa.RSAPublicNumbers(65537, n).public_key())),
        "kid": kid,
    }


def test_huge_rsa_keys_are_skipped(caplog: pytest.LogCaptureFixture) -> None:
    jwks = {"keys": [_modulus_jwk(8192, "largest"), _modulus_jwk(8200, "huge")]}
    with caplog.at_level(logging.WARNING, logger="tokenguard"):
        keys = load_jwks(jwks, ALL, 10)
    assert set(keys) == {"largest"}
    assert [getattr(r, "why", "") for r in caplog.records] == ["RSA key over 8192 bits"]


def test_unsupported_curves_are_skipped() -> None:
    p521 = jwk_of("EC", kid="p521", curve="P-521")
    keys = load_jwks({"keys": [p521]}, ALL | {"ES512"}, 10)
    assert keys["p521"].algorithms == {"ES512"}
    with pytest.raises(ValueError):
        load_jwks({"keys": [p521]}, ALL, 10)


def _skip_reasons(jwks: dict[str, Any], caplog: pytest.LogCaptureFixture) -> list[str]:
    with caplog.at_level(logging.WARNING, logger="tokenguard"), pytest.raises(ValueError):
        load_jwks(jwks, ALL, 10)
    return [getattr(r, "why", "") for r in caplog.records]


def test_keys_of_unsupported_curves_and_types_are_skipped(
    caplog: pytest.LogCaptureFixture,
) -> None:
    k1 = json.loads(ECAlgorithm.to_jwk(ec.generate_private_key(ec.SECP256K1()).public_key()))
    ed448_key = ed448.Ed448PrivateKey.generate().public_key()
    ed448_jwk = json.loads(OKPAlgorithm.to_jwk(ed448_key))
    other = {"kty": "XYZ", "x": "AQAB"}
    jwks = {"keys": [k1 | {"kid": "k1"}, ed448_jwk | {"kid": "ed448"}, other | {"kid": "xyz"}]}
    assert _skip_reasons(jwks, caplog) == [
        "unsupported curve",
        "unsupported OKP curve",
        "unsupported key type",
    ]


def test_duplicate_kids_drop_both(rsa_jwk: dict[str, Any]) -> None:
    other = jwk_of("RSA", kid="k1")
    keep = {**rsa_jwk, "kid": "k2"}
    keys = load_jwks({"keys": [rsa_jwk, other, keep]}, ALL, 10)
    assert set(keys) == {"k2"}


@pytest.mark.parametrize(
    "document",
    [[], "keys", {"keys": {}}, {"keys": "x"}, {"nokeys": []}, {"keys": []}, {"keys": [1, 2]}],
)
def test_unusable_documents_raise(document: object) -> None:
    with pytest.raises(ValueError):
        load_jwks(document, ALL, 10)


def test_too_many_keys_is_refused_whole(rsa_jwk: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="more than the limit"):
        load_jwks({"keys": [rsa_jwk] * 3}, ALL, 2)


def test_verify_checks_algorithm_binding_and_signature(session_issuer: LocalIssuer) -> None:
    key = load_jwks(session_issuer.jwks(), ALL, 10)[session_issuer.signing_kid]
    token = session_issuer.mint()
    signing_input, _, sig64 = token.rpartition(".")
    from tokenguard._token import b64url_decode

    signature = b64url_decode(sig64.encode())
    assert key.verify("RS256", signing_input.encode(), signature)
    assert not key.verify("RS256", signing_input.encode() + b"x", signature)
    assert not key.verify("ES256", signing_input.encode(), signature)
    assert not key.verify("RS256", signing_input.encode(), b"")


@pytest.mark.parametrize("kty", ["EC", "OKP"])
def test_ec_and_eddsa_signatures_verify(kty: str) -> None:
    issuer = LocalIssuer(key_type=kty)  # type: ignore[arg-type]
    key = load_jwks(issuer.jwks(), ALL, 10)[issuer.signing_kid]
    token = issuer.mint()
    signing_input, _, sig64 = token.rpartition(".")
    from tokenguard._token import b64url_decode

    signature = b64url_decode(sig64.encode())
    alg = issuer.signing_key.alg
    assert key.verify(alg, signing_input.encode(), signature)
    assert not key.verify(alg, signing_input.encode(), signature[:-1])
    assert not key.verify(alg, signing_input.encode(), bytes(len(signature)))


def test_same_key_compares_public_material(rsa_jwk: dict[str, Any]) -> None:
    a = load_jwks({"keys": [rsa_jwk]}, ALL, 10)["k1"]
    b = load_jwks({"keys": [rsa_jwk]}, ALL, 10)["k1"]
    c = load_jwks({"keys": [jwk_of("RSA")]}, ALL, 10)["k1"]
    ed1 = load_jwks({"keys": [jwk_of("OKP", kid="e")]}, ALL, 10)["e"]
    assert a.same_key(b)
    assert not a.same_key(c)
    assert ed1.same_key(ed1)
    assert not a.same_key(ed1)
    assert isinstance(a, VerificationKey)


@pytest.mark.parametrize("alg", ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512"])
def test_every_rsa_algorithm_verifies_its_own_signatures(alg: str) -> None:
    from jwt.algorithms import get_default_algorithms

    private = generate_key("RSA")
    jwk = {**SigningKey("k", alg, private).public_jwk}
    key = load_jwks({"keys": [jwk]}, ALL | {"RS384", "RS512", "PS384", "PS512"}, 10)["k"]
    data = b"header.payload"
    signature = get_default_algorithms()[alg].sign(data, private)
    assert key.verify(alg, data, signature)
    assert not key.verify(alg, data + b"!", signature)
    other = "PS256" if alg.startswith("RS") else "RS256"
    assert not key.verify(other, data, signature)


TEMPLATE = "https://login.microsoftonline.com/{tenantid}/v2.0"
CONSUMERS = "https://login.microsoftonline.com/9188040d-6c67-4c5b-b112-36a304b66dad/v2.0"


def test_entra_members_are_kept_on_the_key(rsa_jwk: dict[str, Any]) -> None:
    document = {
        "keys": [
            {
                **rsa_jwk,
                "kid": "t",
                "issuer": TEMPLATE,
                "cloud_instance_name": "microsoftonline.com",
            },
            {**rsa_jwk, "kid": "c", "issuer": CONSUMERS},
            {**rsa_jwk, "kid": "v1"},
            {**rsa_jwk, "kid": "blank", "issuer": " ", "cloud_instance_name": ""},
        ]
    }
    keys = load_jwks(document, ALL, 10)
    assert (keys["t"].issuer, keys["t"].cloud_instance_name) == (TEMPLATE, "microsoftonline.com")
    assert (keys["c"].issuer, keys["c"].cloud_instance_name) == (CONSUMERS, None)
    assert (keys["v1"].issuer, keys["v1"].cloud_instance_name) == (None, None)
    # Blank members bind nothing, as Microsoft.IdentityModel reads them.
    assert (keys["blank"].issuer, keys["blank"].cloud_instance_name) == (None, None)
    assert "issuer='https://login.microsoftonline.com/{tenantid}/v2.0'" in repr(keys["t"])


def test_keys_of_another_cloud_are_skipped_when_the_cloud_is_named(
    rsa_jwk: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    document = {
        "keys": [
            {**rsa_jwk, "kid": "com", "cloud_instance_name": "microsoftonline.com"},
            {**rsa_jwk, "kid": "us", "cloud_instance_name": "microsoftonline.us"},
            {**rsa_jwk, "kid": "none"},
        ]
    }
    assert set(load_jwks(document, ALL, 10)) == {"com", "us", "none"}
    with caplog.at_level(logging.WARNING, logger="tokenguard"):
        keys = load_jwks(document, ALL, 10, cloud_instance="microsoftonline.com")
    assert set(keys) == {"com", "none"}
    skipped = [r for r in caplog.records if getattr(r, "kid", None) == "us"]
    assert [getattr(r, "why", "") for r in skipped] == [
        "key of another cloud instance (microsoftonline.us)"
    ]
    with pytest.raises(ValueError, match="no usable signing key"):
        load_jwks({"keys": document["keys"][1:2]}, ALL, 10, cloud_instance="microsoftonline.com")


def test_same_key_compares_the_issuer_binding(rsa_jwk: dict[str, Any]) -> None:
    def load(**members: str) -> VerificationKey:
        return load_jwks({"keys": [{**rsa_jwk, **members}]}, ALL, 10)["k1"]

    assert load(issuer=TEMPLATE).same_key(load(issuer=TEMPLATE))
    assert not load(issuer=TEMPLATE).same_key(load(issuer=CONSUMERS))
    assert not load(issuer=TEMPLATE).same_key(load())
    assert not load(cloud_instance_name="microsoftonline.com").same_key(
        load(cloud_instance_name="microsoftonline.us")
    )


_PSS_HASHES: dict[str, type[hashes.HashAlgorithm]] = {
    "PS256": hashes.SHA256,
    "PS384": hashes.SHA384,
    "PS512": hashes.SHA512,
}


@pytest.mark.parametrize("alg", sorted(_PSS_HASHES))
def test_pss_signature_must_be_exactly_the_modulus_length(alg: str) -> None:
    # RFC 8017 8.1.2: a signature is k octets. About one PSS signature in 256 starts
    # with a zero octet; OpenSSL also takes it with that octet dropped.
    private = generate_key("RSA")
    assert isinstance(private, rsa.RSAPrivateKey)
    key = load_jwks({"keys": [SigningKey("k", alg, private).public_jwk]}, ALL | {alg}, 10)["k"]
    hash_cls = _PSS_HASHES[alg]
    pss = padding.PSS(mgf=padding.MGF1(hash_cls()), salt_length=hash_cls().digest_size)
    data = b"header.payload"
    for _ in range(20_000):  # PSS is randomised: each signature is a new draw
        signature = private.sign(data, pss, hash_cls())
        if signature[0] == 0:
            break
    else:
        raise AssertionError("no PSS signature with a leading zero octet in 20000 draws")
    assert len(signature) == 256
    assert key.verify(alg, data, signature)
    private.public_key().verify(signature[1:], data, pss, hash_cls())  # OpenSSL: fine
    assert not key.verify(alg, data, signature[1:])
    assert not key.verify(alg, data, b"\0" + signature)
