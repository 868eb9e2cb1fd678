"""The algorithm registry: what configuration accepts and what each key type verifies."""

from __future__ import annotations

import pytest

from tokenguard import Issuer
from tokenguard._algorithms import (
    ALGORITHMS,
    ASYMMETRIC_ALGORITHMS,
    SYMMETRIC_ALGORITHMS,
    algorithms_for_curve,
    algorithms_for_key_type,
)
from tokenguard._config import ASYMMETRIC_ALGORITHMS as CONFIG_ASYMMETRIC

ISSUER = "https://issuer.example/"


def _issuer(alg: str) -> Issuer:
    return Issuer(issuer=ISSUER, audiences=["api"], jwks_uri=ISSUER + "keys", algorithms=[alg])


def test_registry_partitions_the_names() -> None:
    assert {
        "RS256", "RS384", "RS512", "PS256", "PS384", "PS512",
        "ES256", "ES384", "ES512", "EdDSA",
    } == ASYMMETRIC_ALGORITHMS  # fmt: skip
    assert {"HS256", "HS384", "HS512"} == SYMMETRIC_ALGORITHMS
    assert set(ALGORITHMS) == ASYMMETRIC_ALGORITHMS | SYMMETRIC_ALGORITHMS
    assert CONFIG_ASYMMETRIC is ASYMMETRIC_ALGORITHMS


def test_each_key_type_verifies_its_algorithms() -> None:
    assert algorithms_for_key_type("RSA") == {n for n in ALGORITHMS if n[:2] in ("RS", "PS")}
    assert algorithms_for_key_type("OKP") == {"EdDSA"}
    assert algorithms_for_curve("secp256r1") == frozenset({"ES256"})
    assert algorithms_for_curve("secp384r1") == frozenset({"ES384"})
    assert algorithms_for_curve("secp521r1") == frozenset({"ES512"})
    assert algorithms_for_curve("secp256k1") == frozenset()
    assert algorithms_for_curve(None) == frozenset()
    for name, alg in ALGORITHMS.items():
        assert alg.name == name
        assert (alg.padding is not None) == (alg.kty == "RSA")
        assert (alg.curve is not None) == (alg.crv is not None) == (alg.kty == "EC")


@pytest.mark.parametrize("alg", sorted(ASYMMETRIC_ALGORITHMS))
def test_configuration_accepts_every_public_key_algorithm(alg: str) -> None:
    assert _issuer(alg).algorithms == (alg,)


@pytest.mark.parametrize("alg", sorted(SYMMETRIC_ALGORITHMS))
def test_configuration_refuses_hmac_by_name(alg: str) -> None:
    with pytest.raises(ValueError, match="symmetric"):
        _issuer(alg)
