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
    assert Issuer(**{**OK, "audiences": "single"}).audiences == ("single",)


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
