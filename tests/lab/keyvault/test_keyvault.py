"""The toy Key Vault driven by the official ``azure-keyvault-secrets`` client over TLS."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from azure.core.exceptions import (
    HttpResponseError,
    ResourceExistsError,
    ResourceNotFoundError,
)
from azure.keyvault.secrets import SecretClient
from examples.lab import blob, keyvault
from examples.lab.keyvault import MAX_VALUE_BYTES
from examples.lab.runtime import TlsFiles

from tokenguard.testing import LocalIssuer

from .._kit import (
    STORAGE,
    VAULT,
    LabCredential,
    Mint,
    Principals,
    mint_valid,
    refused_naming_the_caller,
    refused_with_401,
    response_of,
    vault_client,
)
from ..conftest import WithoutToken, running_vault

API = "api-version=2026-04-01"


@pytest.fixture
def officer(
    vault_url: str, tls: TlsFiles, lab_issuer: LocalIssuer, principals: Principals
) -> Iterator[SecretClient]:
    with vault_client(
        vault_url, tls, LabCredential(lab_issuer, principals.vault_officer)
    ) as client:
        yield client


def _as(
    url: str, tls: TlsFiles, issuer: LocalIssuer, object_id: str, mint: Mint = mint_valid
) -> SecretClient:
    return vault_client(url, tls, LabCredential(issuer, object_id, mint))


def _name() -> str:
    return f"s-{uuid.uuid4().hex[:12]}"


def _bearer(issuer: LocalIssuer, object_id: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {mint_valid(issuer, VAULT, object_id)}"}


# -- the happy paths ----------------------------------------------------------------


def test_set_and_get_through_the_challenge(
    vault_url: str, tls: TlsFiles, lab_issuer: LocalIssuer, principals: Principals
) -> None:
    credential = LabCredential(lab_issuer, principals.vault_officer)
    seen: list[Any] = []
    name = _name()
    with vault_client(vault_url, tls, credential) as client:
        saved = client.set_secret(name, "s3cret", content_type="text/plain", tags={"app": "lab"})
        got = client.get_secret(name, raw_response_hook=seen.append)
        by_version = client.get_secret(name, saved.properties.version)
    # The SDK learnt the scope and tenant from the vault's 401 challenge.
    assert credential.requests[0] == ((f"{VAULT}/.default",), lab_issuer.tenant_id)
    assert saved.id == f"{vault_url}/secrets/{name}/{saved.properties.version}"
    assert len(saved.properties.version or "") == 32
    assert (got.value, by_version.value) == ("s3cret", "s3cret")
    assert got.properties.content_type == "text/plain"
    assert got.properties.tags == {"app": "lab"}
    assert got.properties.enabled is True
    assert got.properties.recoverable_days == 90
    caller = seen[0].http_response.headers["x-ms-lab-caller"]
    assert f"oid={principals.vault_officer}" in caller
    assert "name=test-identity" in caller
    assert "x-ms-request-id" in seen[0].http_response.headers


def test_versions_are_kept_and_the_latest_wins(officer: SecretClient) -> None:
    name = _name()
    versions = [officer.set_secret(name, f"v{i}").properties.version for i in range(3)]
    listed = [p.version for p in officer.list_properties_of_secret_versions(name, max_page_size=1)]
    assert listed == versions
    assert officer.get_secret(name).value == "v2"
    assert officer.get_secret(name, versions[0]).value == "v0"
    with pytest.raises(ResourceNotFoundError):
        officer.get_secret(name, uuid.uuid4().hex)


def test_list_secrets_pages_with_next_link(
    tmp_path: Path, tls: TlsFiles, lab_issuer: LocalIssuer, principals: Principals
) -> None:
    with (
        running_vault(lab_issuer, principals, tls, tmp_path) as url,
        _as(url, tls, lab_issuer, principals.vault_officer) as client,
    ):
        names = {f"page-{i}" for i in range(5)}
        for name in names:
            client.set_secret(name, name.upper())
        client.set_secret("page-0", "second version")  # still one entry
        pages = list(client.list_properties_of_secrets(max_page_size=2).by_page())
        listed = [p.name for page in pages for p in page]
    assert len(pages) == 3
    assert sorted(str(n) for n in listed) == sorted(names)
    assert len(listed) == len(names)


def test_update_properties_and_disabled_secrets(officer: SecretClient) -> None:
    name = _name()
    first = officer.set_secret(name, "value")
    updated = officer.update_secret_properties(
        name, enabled=False, content_type="application/json", tags={"k": "v"}
    )
    assert updated.version == first.properties.version
    assert (updated.enabled, updated.content_type, updated.tags) == (
        False,
        "application/json",
        {"k": "v"},
    )
    with pytest.raises(HttpResponseError) as refused:
        officer.get_secret(name)
    assert refused.value.status_code == 403
    assert refused.value.error is not None
    assert refused.value.error.code == "Forbidden"
    officer.update_secret_properties(name, first.properties.version, enabled=True)
    assert officer.get_secret(name).value == "value"
    assert officer.get_secret(name).properties.content_type == "application/json"


def test_soft_delete_recover_and_purge(officer: SecretClient) -> None:
    name = _name()
    officer.set_secret(name, "keep me")
    poller = officer.begin_delete_secret(name)
    poller.wait()
    deleted = poller.result()
    assert deleted.recovery_id is not None
    assert deleted.recovery_id.endswith(f"/deletedsecrets/{name}")
    assert deleted.deleted_date is not None
    assert deleted.scheduled_purge_date is not None
    assert (deleted.scheduled_purge_date - deleted.deleted_date).days == 90
    with pytest.raises(ResourceNotFoundError):
        officer.get_secret(name)
    assert name in {d.name for d in officer.list_deleted_secrets()}
    assert officer.get_deleted_secret(name).recovery_id == deleted.recovery_id
    with pytest.raises(ResourceExistsError):  # 409 Conflict: the name is held
        officer.set_secret(name, "new")

    officer.begin_recover_deleted_secret(name).wait()
    assert officer.get_secret(name).value == "keep me"
    assert name not in {d.name for d in officer.list_deleted_secrets()}

    officer.begin_delete_secret(name).wait()
    officer.purge_deleted_secret(name)
    with pytest.raises(ResourceNotFoundError):
        officer.get_deleted_secret(name)
    assert officer.set_secret(name, "fresh").value == "fresh"
    assert len(list(officer.list_properties_of_secret_versions(name))) == 1


def test_deleted_secrets_expire_after_the_retention(
    tmp_path: Path, tls: TlsFiles, lab_issuer: LocalIssuer, principals: Principals
) -> None:
    now = [time.time()]
    with (
        running_vault(
            lab_issuer, principals, tls, tmp_path, clock=lambda: now[0], recoverable_days=7
        ) as url,
        _as(url, tls, lab_issuer, principals.vault_officer) as client,
    ):
        for name in ("short-lived", "also-short"):
            client.set_secret(name, "x")
            client.begin_delete_secret(name).wait()
        assert client.get_deleted_secret("short-lived").properties.recoverable_days == 7
        now[0] += 7 * 86_400 - 1
        assert {d.name for d in client.list_deleted_secrets()} == {"short-lived", "also-short"}
        now[0] += 1  # the scheduled purge date: both are gone
        assert list(client.list_deleted_secrets()) == []
        with pytest.raises(ResourceNotFoundError):
            client.get_deleted_secret("also-short")
        with pytest.raises(ResourceNotFoundError):
            client.begin_recover_deleted_secret("also-short")
        client.set_secret("short-lived", "y")  # the name is free again
        assert client.get_secret("short-lived").value == "y"
        assert len(list(client.list_properties_of_secret_versions("short-lived"))) == 1


def test_names_are_case_insensitive(officer: SecretClient) -> None:
    name = _name()
    officer.set_secret(name, "one")
    assert officer.get_secret(name.upper()).value == "one"


# -- refusals: 401 --------------------------------------------------------------------


def test_no_token_gets_the_key_vault_challenge(vault_url: str, without_token: WithoutToken) -> None:
    response = without_token(
        f"{vault_url}/secrets/anything/?{API}",
        'Bearer authorization="{authority}", resource="https://vault.azure.net"',
    )
    assert response.json()["error"]["code"] == "Unauthorized"
    assert "x-ms-lab-caller" not in response.headers


def test_bad_tokens_are_refused_with_401(
    vault_url: str,
    tls: TlsFiles,
    https: httpx.Client,
    lab_issuer: LocalIssuer,
    principals: Principals,
    bad_mint: Mint,
) -> None:
    with _as(vault_url, tls, lab_issuer, principals.vault_officer, bad_mint) as client:
        refused_with_401(lambda: client.get_secret("anything"))
    token = bad_mint(lab_issuer, VAULT, principals.vault_officer)
    response = https.get(
        f"{vault_url}/secrets/anything/?{API}", headers={"Authorization": f"Bearer {token}"}
    )
    assert response.status_code == 401
    assert 'error="invalid_token"' in response.headers["www-authenticate"]
    assert token not in response.text


def test_token_for_another_audience_is_refused(
    vault_url: str, https: httpx.Client, lab_issuer: LocalIssuer, principals: Principals
) -> None:
    token = mint_valid(lab_issuer, "https://storage.azure.com", principals.vault_officer)
    response = https.get(
        f"{vault_url}/secrets/anything/?{API}", headers={"Authorization": f"Bearer {token}"}
    )
    assert response.status_code == 401
    assert 'error="invalid_token"' in response.headers["www-authenticate"]


# -- refusals: 403 --------------------------------------------------------------------


def test_secrets_user_reads_but_cannot_write(
    vault_url: str,
    tls: TlsFiles,
    officer: SecretClient,
    lab_issuer: LocalIssuer,
    principals: Principals,
) -> None:
    name = _name()
    officer.set_secret(name, "shared")
    with _as(vault_url, tls, lab_issuer, principals.vault_user) as reader:
        assert reader.get_secret(name).value == "shared"
        assert name in {p.name for p in reader.list_properties_of_secrets()}
        for attempt in (
            lambda: reader.set_secret(name, "mine now"),
            lambda: reader.begin_delete_secret(name),
            lambda: reader.update_secret_properties(name, enabled=False),
            lambda: list(reader.list_deleted_secrets()),
        ):
            with pytest.raises(HttpResponseError) as refused:
                attempt()
            assert refused.value.status_code == 403
            response = response_of(refused.value)
            assert 'error="insufficient_scope"' in response.headers["WWW-Authenticate"]
            assert response.json()["error"]["innererror"]["code"] == "ForbiddenByRbac"
    assert officer.get_secret(name).value == "shared"


def test_identity_without_a_role_is_forbidden(
    vault_url: str, tls: TlsFiles, lab_issuer: LocalIssuer, principals: Principals
) -> None:
    with _as(vault_url, tls, lab_issuer, principals.nobody) as client:
        refused_naming_the_caller(
            lambda hook: client.get_secret("anything", raw_response_hook=hook), principals.nobody
        )


# -- bad input: 4xx, never 500 --------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "code"),
    [
        ("PUT", "/secrets/bad_name", {"value": "x"}, 400, "BadParameter"),
        ("PUT", f"/secrets/{'a' * 128}", {"value": "x"}, 400, "BadParameter"),
        ("PUT", "/secrets/ok", {"value": "x" * (MAX_VALUE_BYTES + 1)}, 400, "BadParameter"),
        ("PUT", "/secrets/ok", {"value": 42}, 400, "BadParameter"),
        ("PUT", "/secrets/ok", {}, 400, "BadParameter"),
        ("PUT", "/secrets/ok", [1, 2], 400, "BadParameter"),
        ("PUT", "/secrets/ok", {"value": "x", "tags": {"k": 1}}, 400, "BadParameter"),
        ("PUT", "/secrets/ok", {"value": "x", "attributes": {"enabled": "yes"}}, 400, ""),
        ("PUT", "/secrets/ok", {"value": "x", "attributes": {"exp": 1.5}}, 400, ""),
        ("PUT", "/secrets/ok", {"value": "x", "attributes": {"nbf": 10, "exp": 5}}, 400, ""),
        ("GET", "/secrets?maxresults=0", None, 400, "BadParameter"),
        ("GET", "/secrets?maxresults=26", None, 400, "BadParameter"),
        ("GET", "/secrets?maxresults=abc", None, 400, "BadParameter"),
        ("GET", "/secrets?maxresults=%C2%B2", None, 400, "BadParameter"),  # superscript 2
        ("GET", "/secrets/ok/versions?$skiptoken=%C2%B2", None, 400, "BadParameter"),
        ("GET", "/secrets?$skiptoken=%00", None, 400, "BadParameter"),
        ("GET", "/secrets/ok/versions?$skiptoken=x", None, 400, "BadParameter"),
        ("GET", "/secrets/ok/not-a-version", None, 404, "SecretNotFound"),
        ("GET", "/deletedsecrets/never-deleted", None, 404, "SecretNotFound"),
        ("POST", "/deletedsecrets/never-deleted/recover", None, 404, "SecretNotFound"),
        ("DELETE", "/deletedsecrets/never-deleted", None, 404, "SecretNotFound"),
        ("DELETE", "/secrets/never-set", None, 404, "SecretNotFound"),
        ("GET", "/keys/some-key", None, 404, "NotFound"),
        ("POST", "/secrets/ok", None, 405, "MethodNotAllowed"),
    ],
)
def test_bad_requests_get_key_vault_errors(
    vault_url: str,
    https: httpx.Client,
    lab_issuer: LocalIssuer,
    principals: Principals,
    method: str,
    path: str,
    body: Any,
    status: int,
    code: str,
) -> None:
    separator = "&" if "?" in path else "?"
    response = https.request(
        method,
        f"{vault_url}{path}{separator}{API}",
        json=body,
        headers=_bearer(lab_issuer, principals.vault_officer),
    )
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == (code or "BadParameter")


@pytest.mark.parametrize(
    "raw",
    [
        b"not json",
        b'{"value": "\\ud800"}',  # a lone surrogate cannot be stored as text
        b'{"value": NaN}',
        b"[" * 100_000,  # deeper than the JSON parser recurses
        b"\xff\xfe",
    ],
    ids=["text", "surrogate", "nan", "deep", "binary"],
)
def test_malformed_bodies_are_400(
    vault_url: str,
    https: httpx.Client,
    lab_issuer: LocalIssuer,
    principals: Principals,
    raw: bytes,
) -> None:
    response = https.put(
        f"{vault_url}/secrets/ok?{API}",
        content=raw,
        headers=_bearer(lab_issuer, principals.vault_officer),
    )
    assert response.status_code == 400, response.text
    assert response.json()["error"]["code"] == "BadParameter"


def test_oversized_body_is_413(
    vault_url: str, https: httpx.Client, lab_issuer: LocalIssuer, principals: Principals
) -> None:
    body = json.dumps({"value": "x" * (300 * 1024)}).encode()
    response = https.put(
        f"{vault_url}/secrets/ok?{API}",
        content=body,
        headers=_bearer(lab_issuer, principals.vault_officer),
    )
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "RequestBodyTooLarge"


def test_api_version_is_required(
    vault_url: str, https: httpx.Client, lab_issuer: LocalIssuer, principals: Principals
) -> None:
    response = https.get(
        f"{vault_url}/secrets", headers=_bearer(lab_issuer, principals.vault_officer)
    )
    assert response.status_code == 400
    assert "api-version" in response.json()["error"]["message"]


def test_value_at_the_limit_is_accepted(officer: SecretClient) -> None:
    name = _name()
    value = "é" * (MAX_VALUE_BYTES // 2)  # two bytes each in UTF-8: exactly the limit
    assert officer.set_secret(name, value).value == value
    assert officer.get_secret(name).value == value


@pytest.mark.parametrize(
    ("factory", "own"), [(keyvault.create_app, VAULT), (blob.create_app, STORAGE)]
)
def test_a_validator_for_other_audiences_is_refused_at_construction(
    factory: Callable[..., Any],
    own: str,
    lab_issuer: LocalIssuer,
    principals: Principals,
    tmp_path: Path,
) -> None:
    options: dict[str, Any] = {
        "rbac": principals.rbac(),
        "state_dir": tmp_path,
        "public_url": "https://127.0.0.1:1",
        "authority": "http://127.0.0.1:2/tenant",
        "tenant_id": lab_issuer.tenant_id,
    }
    # Its own audience, with or without the trailing slash: accepted.
    own_only = [own, own.rstrip("/") + "/"]
    factory(
        validator=lab_issuer.validator(audiences=own_only, require_roles_or_scopes=False),
        **options,
    )
    both = lab_issuer.validator(audiences=[VAULT, STORAGE], require_roles_or_scopes=False)
    with pytest.raises(ValueError, match="also accepts"):
        factory(validator=both, **options)
    # Its tokens carry no roles: a validator refusing role-less tokens would refuse them all.
    strict = lab_issuer.validator(audiences=own_only, require_roles_or_scopes=True)
    with pytest.raises(ValueError, match="require_roles_or_scopes=False"):
        factory(validator=strict, **options)
