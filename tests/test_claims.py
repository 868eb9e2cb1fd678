"""The claim checks, one family at a time (the validator's tests cover them in the pipeline)."""

from __future__ import annotations

import math
from typing import Any

import pytest

from tokenguard import InvalidToken, _claims
from tokenguard._identity import identity_from_claims

NOW = 1_700_000_000.0


def reason(call: Any, *args: Any) -> str:
    with pytest.raises(InvalidToken) as info:
        call(*args)
    return info.value.reason


def test_times_window_includes_the_leeway() -> None:
    assert _claims.check_times({"exp": NOW + 10, "nbf": NOW - 5, "iat": NOW}, NOW, 60) == (
        NOW + 70,
        NOW - 65,
    )
    assert _claims.check_times({"exp": NOW - 59}, NOW, 60) == (NOW + 1, -math.inf)
    assert _claims.check_times({"exp": 10**400}, NOW, 0) == (math.inf, -math.inf)


def test_times_refusals() -> None:
    assert reason(_claims.check_times, {}, NOW, 0) == "missing_claim"
    assert reason(_claims.check_times, {"exp": True}, NOW, 0) == "invalid_claim"
    assert reason(_claims.check_times, {"exp": str(NOW + 10)}, NOW, 0) == "invalid_claim"
    assert reason(_claims.check_times, {"exp": NOW - 60}, NOW, 60) == "expired"
    assert reason(_claims.check_times, {"exp": NOW + 10, "nbf": "0"}, NOW, 0) == "invalid_claim"
    assert (
        reason(_claims.check_times, {"exp": NOW + 10, "nbf": NOW + 61}, NOW, 60) == "not_yet_valid"
    )
    assert reason(_claims.check_times, {"exp": NOW + 10, "iat": False}, NOW, 0) == "invalid_claim"
    assert (
        reason(_claims.check_times, {"exp": NOW + 99, "iat": NOW + 61}, NOW, 60)
        == "issued_in_future"
    )


def test_audience() -> None:
    ours = frozenset({"api://a", "api://b"})
    assert _claims.check_audience("api://b", ours) == "api://b"
    assert _claims.check_audience(["other", "api://a"], ours) == "api://a"
    assert reason(_claims.check_audience, None, ours) == "missing_claim"
    assert reason(_claims.check_audience, ["api://a", 1], ours) == "invalid_claim"
    assert reason(_claims.check_audience, {"api://a": 1}, ours) == "invalid_claim"
    assert reason(_claims.check_audience, "other", ours) == "wrong_audience"
    assert reason(_claims.check_audience, [], ours) == "wrong_audience"


def test_required_and_id_token_claims() -> None:
    _claims.check_required({"oid": "x", "tid": "t"}, ("oid", "tid"))
    assert reason(_claims.check_required, {"oid": "x"}, ("oid", "tid")) == "missing_claim"
    _claims.check_not_id_token({"oid": "x"})
    for name in ("nonce", "at_hash", "c_hash"):
        assert reason(_claims.check_not_id_token, {name: "x"}) == "wrong_type"


def test_key_issuer() -> None:
    template = "https://login.example/{tenantid}/v2.0"
    _claims.check_key_issuer("https://sts.example/", {"iss": "https://sts.example/"})
    _claims.check_key_issuer(template, {"iss": "https://login.example/t1/v2.0", "tid": "t1"})
    assert (
        reason(_claims.check_key_issuer, "https://sts.example/", {"iss": "x"})
        == "key_issuer_mismatch"
    )
    claims = {"iss": "https://login.example/t1/v2.0", "tid": "t2"}
    assert reason(_claims.check_key_issuer, template, claims) == "key_issuer_mismatch"
    assert reason(_claims.check_key_issuer, template, {"iss": "x"}) == "missing_claim"
    assert reason(_claims.check_key_issuer, template, {"iss": "x", "tid": "a/b"}) == "invalid_claim"


def test_permissions() -> None:
    base = {"iss": "https://sts.example/", "exp": NOW, "oid": "o", "sub": "o"}
    _claims.check_permissions(identity_from_claims(base | {"roles": ["Read"]}, audience="api"))
    _claims.check_permissions(identity_from_claims(base | {"scp": "read"}, audience="api"))
    none = identity_from_claims(base | {"roles": [""]}, audience="api")
    assert reason(_claims.check_permissions, none) == "no_permissions"
