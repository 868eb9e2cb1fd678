"""tokenguard.metrics after real requests through the middleware; structured, token-free logs."""

from __future__ import annotations

import importlib
import logging
import sys
from collections.abc import Iterator

import httpx
import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from tokenguard import TokenGuardMiddleware, TokenValidator, fingerprint
from tokenguard.metrics import PrometheusObserver, metrics_endpoint
from tokenguard.testing import LocalIssuer

from .conftest import VAULT
from .helpers import FakeClock, bearer


async def hello(request: Request) -> PlainTextResponse:
    return PlainTextResponse("hello")


def protected_app(validator: TokenValidator, observer: PrometheusObserver) -> Starlette:
    return Starlette(
        routes=[Route("/", hello), Route("/metrics", metrics_endpoint(observer.registry))],
        middleware=[
            Middleware(TokenGuardMiddleware, validator=validator, exclude_paths=["/metrics"])
        ],
    )


@pytest.fixture
def issuer(session_issuer: LocalIssuer) -> LocalIssuer:
    """These tests never change keys: share the session's issuer (no RSA key per test)."""
    return session_issuer


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(5000.0)


@pytest.fixture
def observer() -> PrometheusObserver:
    return PrometheusObserver()


@pytest.fixture
def validator(
    issuer: LocalIssuer, observer: PrometheusObserver, clock: FakeClock
) -> TokenValidator:
    validator = issuer.validator([VAULT], observer=observer, monotonic=clock)
    observer.watch(validator)
    return validator


@pytest.fixture
def client(validator: TokenValidator, observer: PrometheusObserver) -> Iterator[TestClient]:
    with TestClient(protected_app(validator, observer)) as c:
        yield c


def sample(observer: PrometheusObserver, name: str, **labels: str) -> float | None:
    return observer.registry.get_sample_value(name, labels)


def test_validation_counters_after_requests(
    client: TestClient, issuer: LocalIssuer, observer: PrometheusObserver
) -> None:
    token = issuer.mint(VAULT, roles=["Secrets.Read"])
    answers = [
        client.get("/", headers=bearer(token)).status_code,
        client.get("/", headers=bearer(token)).status_code,  # verified-token cache hit
        client.get("/", headers=bearer(issuer.forge(VAULT))).status_code,
        client.get(
            "/", headers=bearer(issuer.mint(VAULT, issued_at=issuer.clock() - 7200, lifetime=60))
        ).status_code,
        client.get("/", headers=bearer(issuer.mint("https://storage.azure.com/"))).status_code,
        client.get("/").status_code,  # no token: never reaches the validator
    ]
    assert answers == [200, 200, 401, 401, 401, 401]
    total = "tokenguard_validations_total"
    assert sample(observer, total, outcome="valid", reason="") == 2
    assert sample(observer, total, outcome="invalid", reason="bad_signature") == 1
    assert sample(observer, total, outcome="invalid", reason="expired") == 1
    assert sample(observer, total, outcome="invalid", reason="wrong_audience") == 1
    assert sample(observer, "tokenguard_token_cache_hits_total") == 1
    assert sample(observer, "tokenguard_token_cache_misses_total") == 4
    duration = "tokenguard_validation_duration_seconds"
    assert sample(observer, f"{duration}_count", outcome="valid") == 1
    assert sample(observer, f"{duration}_count", outcome="invalid") == 3
    valid_sum = sample(observer, f"{duration}_sum", outcome="valid")
    assert valid_sum is not None
    assert valid_sum > 0
    # Every observation lands in the +Inf bucket; the buckets are cumulative.
    assert sample(observer, f"{duration}_bucket", outcome="invalid", le="+Inf") == 3


def test_key_fetches_and_key_set_gauges(
    client: TestClient, issuer: LocalIssuer, observer: PrometheusObserver, clock: FakeClock
) -> None:
    fetches = "tokenguard_key_fetches_total"
    iss = issuer.issuer
    # The middleware warmed the keys at startup: one discovery and one JWKS fetch.
    assert sample(observer, fetches, issuer=iss, document="discovery", outcome="ok") == 1
    assert sample(observer, fetches, issuer=iss, document="jwks", outcome="ok") == 1
    clock.now += 42
    assert sample(observer, "tokenguard_keyset_age_seconds", issuer=iss) == 42
    assert sample(observer, "tokenguard_keyset_keys", issuer=iss) == 1
    assert sample(observer, "tokenguard_keyset_usable", issuer=iss) == 1
    # An unknown kid past the refresh cooldown refetches the JWKS: unchanged, so a 304.
    clock.now += 60
    unknown = issuer.mint(VAULT, headers={"kid": "not-a-published-kid"})
    assert client.get("/", headers=bearer(unknown)).status_code == 401
    assert sample(observer, fetches, issuer=iss, document="jwks", outcome="not_modified") == 1
    assert sample(observer, "tokenguard_keyset_age_seconds", issuer=iss) == 0
    assert (
        sample(observer, "tokenguard_validations_total", outcome="invalid", reason="unknown_key")
        == 1
    )


def test_failed_fetches_and_unusable_keys(issuer: LocalIssuer) -> None:
    observer = PrometheusObserver()
    down = httpx.AsyncClient(transport=httpx.MockTransport(lambda r: httpx.Response(500)))
    validator = TokenValidator([issuer.issuer_config([VAULT])], http_client=down, observer=observer)
    observer.watch(validator)
    with TestClient(protected_app(validator, observer)) as client:
        assert client.get("/", headers=bearer(issuer.mint(VAULT))).status_code == 503
    iss = issuer.issuer
    errors = sample(
        observer, "tokenguard_key_fetches_total", issuer=iss, document="discovery", outcome="error"
    )
    assert errors is not None
    assert errors >= 1
    assert sample(observer, "tokenguard_keyset_usable", issuer=iss) == 0
    assert sample(observer, "tokenguard_keyset_keys", issuer=iss) == 0
    # Never fetched: no age sample rather than a made-up number.
    assert sample(observer, "tokenguard_keyset_age_seconds", issuer=iss) is None
    assert (
        sample(
            observer, "tokenguard_validations_total", outcome="invalid", reason="keys_unavailable"
        )
        == 1
    )


def test_metrics_endpoint_serves_the_exposition_format(
    client: TestClient, issuer: LocalIssuer
) -> None:
    client.get("/", headers=bearer(issuer.mint(VAULT)))
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    families = {f.name: f for f in text_string_to_metric_families(response.text)}
    assert {
        "tokenguard_validations",
        "tokenguard_token_cache_hits",
        "tokenguard_token_cache_misses",
        "tokenguard_validation_duration_seconds",
        "tokenguard_key_fetches",
        "tokenguard_keyset_age_seconds",
        "tokenguard_keyset_seconds_since_change",
        "tokenguard_keyset_keys",
        "tokenguard_keyset_usable",
    } <= set(families)
    assert families["tokenguard_validations"].type == "counter"
    assert families["tokenguard_keyset_age_seconds"].type == "gauge"
    assert families["tokenguard_validation_duration_seconds"].type == "histogram"


def test_given_registry_and_namespace(issuer: LocalIssuer) -> None:
    registry = CollectorRegistry()
    observer = PrometheusObserver(registry, namespace="api_auth")
    assert observer.registry is registry
    validator = issuer.validator([VAULT], observer=observer)
    # Watching two validators of the same issuer reports it once (no duplicate series).
    observer.watch(validator)
    observer.watch(issuer.validator([VAULT]))
    observer.validation("valid", None, issuer.issuer, 0.001, False)
    assert registry.get_sample_value(
        "api_auth_validations_total", {"outcome": "valid", "reason": ""}
    )
    assert registry.get_sample_value("api_auth_keyset_usable", {"issuer": issuer.issuer}) == 0
    text = "\n".join(m.name for m in registry.collect())
    assert text.count("api_auth_keyset_usable") == 1
    assert "tokenguard_" not in text


def test_observers_do_not_share_state(issuer: LocalIssuer) -> None:
    first, second = PrometheusObserver(), PrometheusObserver()
    first.validation("invalid", "expired", issuer.issuer, 0.01, False)
    labels = {"outcome": "invalid", "reason": "expired"}
    assert first.registry.get_sample_value("tokenguard_validations_total", labels) == 1
    assert second.registry.get_sample_value("tokenguard_validations_total", labels) is None


def test_import_without_prometheus_client_names_the_extra(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delitem(sys.modules, "tokenguard.metrics")
    monkeypatch.setitem(sys.modules, "prometheus_client", None)
    with pytest.raises(ImportError) as info:
        importlib.import_module("tokenguard.metrics")
    assert "pip install 'tokenguard-asgi[metrics]'" in str(info.value)
    assert info.value.__suppress_context__


# -- logging --------------------------------------------------------------------------


def test_rejected_request_logs_fields_never_the_token(
    client: TestClient, issuer: LocalIssuer, caplog: pytest.LogCaptureFixture
) -> None:
    token = issuer.forge(VAULT, object_id="victim-oid")
    caplog.set_level(logging.DEBUG, logger="tokenguard")
    assert client.get("/", headers=bearer(token)).status_code == 401
    records = [r for r in caplog.records if r.name == "tokenguard"]
    rejected = [r for r in records if r.getMessage().startswith("request rejected")]
    assert len(rejected) == 1
    record = rejected[0]
    assert record.__dict__["reason"] == "bad_signature"
    assert record.__dict__["issuer"] == issuer.issuer
    assert record.__dict__["kid"] == issuer.signing_kid
    assert record.__dict__["fingerprint"] == fingerprint(token)
    # The facts are in the message text too: plain log handlers show only the text.
    assert record.getMessage() == (
        f"request rejected: reason=bad_signature status=401 issuer={issuer.issuer}"
        f" kid={issuer.signing_kid} fingerprint={fingerprint(token)}"
    )
    signature = token.rsplit(".", 1)[1]
    payload = token.split(".")[1]
    for each in records:
        text = each.getMessage() + repr(each.__dict__)
        assert token not in text
        assert payload not in text
        assert signature not in text
        assert "victim-oid" not in text
    assert token not in caplog.text
