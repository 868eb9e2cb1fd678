"""Issuer configuration is validated at construction."""

from __future__ import annotations

import math
from typing import Any

import pytest

from tokenguard import Issuer

OK: dict[str, Any] = {
    "issuer": "https://sts.windows.net/t/",
    "audiences": ["a"],
    "jwks_uri": "https://x/k",
}


def test_defaults() -> None:
    issuer = Issuer(**OK)
    assert issuer.algorithms == ("RS256",)
    assert issuer.leeway == 60 and issuer.max_stale == 86_400
    assert issuer.key_source == "https://x/k"
    assert not issuer.is_template
    assert issuer.require_roles_or_scopes
    assert issuer.validate_key_issuer
    assert not issuer.validate_cloud_instance


TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"


@pytest.mark.parametrize(
    ("name", "value", "template"),
    [
        ("audiences", "api://x", False),
        ("algorithms", "RS256", False),
        ("required_claims", "oid", False),
        ("token_types", "at+jwt", False),
        ("tenants", TENANT, True),
        ("audiences", b"api://x", False),
    ],
)
def test_a_lone_string_is_not_a_collection(name: str, value: object, template: bool) -> None:
    # Iterated, "<tenant id>" would be its characters: the real tenant refused and
    # every one-character tid accepted.
    base = {**OK, "issuer": "https://login/{tenantid}/v2.0"} if template else OK
    kind = "a str" if isinstance(value, str) else "bytes"
    with pytest.raises(TypeError) as info:
        Issuer(**{**base, name: value})
    assert str(info.value) == (
        f"{name} must be a collection of strings, not {kind}: {name}={[value]!r}"
    )


def test_collections_of_one_string_are_fine() -> None:
    issuer = Issuer(
        **{**OK, "issuer": "https://login/{tenantid}/v2.0"},
        tenants=[TENANT],
        required_claims=["oid"],
        token_types=["JWT"],
        algorithms=["RS256"],
    )
    assert issuer.audiences == ("a",)
    assert issuer.tenants == frozenset({TENANT})
    assert issuer.tenant_allowed(TENANT.upper())
    assert not issuer.tenant_allowed(TENANT[0])
    assert issuer.required_claims == ("oid",)
    assert issuer.algorithms == ("RS256",)


def test_cloud_instance_validation_needs_discovery() -> None:
    with pytest.raises(ValueError, match="validate_cloud_instance needs discovery_url"):
        Issuer(**OK, validate_cloud_instance=True)
    issuer = Issuer(
        **{**OK, "jwks_uri": None, "discovery_url": "https://x/d"}, validate_cloud_instance=True
    )
    assert issuer.validate_cloud_instance


def test_template_and_tenants() -> None:
    issuer = Issuer(**{**OK, "issuer": "https://login/{tenantid}/v2.0", "tenants": ["ABC"]})
    assert issuer.is_template
    assert issuer.tenant_allowed("abc") and not issuer.tenant_allowed("other")
    assert Issuer(**{**OK, "issuer": "https://login/{tenantid}/v2.0"}).tenant_allowed("any")


def test_token_types_are_folded() -> None:
    issuer = Issuer(**OK, token_types=("application/AT+JWT", "JWT"))
    assert issuer.token_types == ("at+jwt", "jwt")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"issuer": ""}, "issuer must not be empty"),
        ({"issuer": "{tenantid}{tenantid}"}, "at most once"),
        ({"tenants": ["t"]}, "only meaningful"),
        ({"audiences": []}, "audiences"),
        ({"audiences": [""]}, "audiences"),
        ({"discovery_url": "https://x/d"}, "exactly one"),
        ({"jwks_uri": None}, "exactly one"),
        ({"jwks_uri": "http://example.com/k"}, "https"),
        ({"jwks_uri": None, "discovery_url": "ftp://x/d"}, "https"),
        ({"algorithms": ()}, "must not be empty"),
        ({"algorithms": ("none",)}, "never allowed"),
        ({"algorithms": ("RS256", "HS256")}, "symmetric"),
        ({"algorithms": ("XX1",)}, "unsupported"),
        ({"leeway": -1}, "leeway"),
        ({"leeway": math.inf}, "leeway must be finite"),
        ({"fetch_timeout": math.inf}, "fetch_timeout must be finite"),
        ({"leeway": math.nan}, "leeway must be a number"),
        ({"max_stale": math.nan}, "max_stale must be a number"),
        ({"fetch_timeout": math.nan}, "fetch_timeout must be a number"),
        ({"fetch_timeout": 0}, "fetch_timeout"),
        ({"max_stale": -1}, "max_stale"),
        ({"min_cache_ttl": 100, "max_cache_ttl": 50}, "min_cache_ttl"),
        ({"max_jwks_bytes": 10}, "max_jwks_bytes"),
        ({"max_keys": 0}, "max_keys"),
    ],
)
def test_nonsense_is_refused(change: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Issuer(**{**OK, **change})


def test_tenant_allow_list_folds_ascii_case_only() -> None:
    issuer = Issuer(**{**OK, "issuer": "https://login/{tenantid}/v2.0"}, tenants=["Contoso-KV"])
    assert issuer.tenant_allowed("contoso-kv")
    assert not issuer.tenant_allowed("contoso-\u212av")  # the Kelvin sign is not "k"
