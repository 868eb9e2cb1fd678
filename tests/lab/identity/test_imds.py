"""The IMDS emulator and the App Service endpoint, driven in process (no sockets)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
import jwt
import pytest
from examples.lab.identity import MAX_CACHED_TOKENS, MAX_RESOURCE_LENGTH, REUSE_MARGIN, LabConfig

from .conftest import IDENTITY_HEADER, Apps

pytestmark = [pytest.mark.lab, pytest.mark.anyio]

TOKEN = "/metadata/identity/oauth2/token"
VAULT = "https://vault.azure.net"
API = "api://tokenguard-lab-api"
META = {"Metadata": "true"}
FIELDS = [
    "access_token", "client_id", "expires_in", "expires_on", "ext_expires_in", "not_before",
    "resource", "token_type",
]  # fmt: skip


def _query(**extra: str) -> dict[str, str]:
    return {"api-version": "2018-02-01", "resource": VAULT, **extra}


def _claims(token: str) -> dict[str, Any]:
    return jwt.decode(token, options={"verify_signature": False})


async def test_token_answer_has_string_fields_like_imds(apps: Apps, lab_config: LabConfig) -> None:
    response = await apps.imds.get(TOKEN, params=_query(), headers=META)
    assert response.status_code == 200
    body = response.json()
    assert sorted(body) == FIELDS
    assert all(isinstance(value, str) for value in body.values())
    now = int(apps.clock.now)
    assert int(body["expires_on"]) - now == int(body["expires_in"]) == 86_400
    assert body["ext_expires_in"] == body["expires_in"]
    assert body["not_before"] == str(now)
    assert (body["resource"], body["token_type"]) == (VAULT, "Bearer")
    assert body["client_id"] == lab_config.vm.identity.client_id
    claims = _claims(body["access_token"])
    assert claims["oid"] == lab_config.vm.identity.object_id
    assert claims["aud"] == VAULT
    assert claims["exp"] == int(body["expires_on"])


async def test_audience_is_the_resource_as_requested(apps: Apps) -> None:
    for resource in ("https://storage.azure.com/", "https://storage.azure.com", "api://my-app"):
        body = (await apps.imds.get(TOKEN, params=_query(resource=resource), headers=META)).json()
        assert body["resource"] == resource
        assert _claims(body["access_token"])["aud"] == resource


async def test_roles_only_in_tokens_for_a_registered_api(apps: Apps) -> None:
    async def roles(resource: str) -> Any:
        answer = await apps.imds.get(TOKEN, params=_query(resource=resource), headers=META)
        return _claims(answer.json()["access_token"]).get("roles")

    # The VM holds Key Vault Secrets Officer and Storage Blob Data Contributor (RBAC): the
    # resources look those up by oid, the tokens carry no roles.
    assert await roles(VAULT) is None
    assert await roles("https://storage.azure.com/") is None
    assert await roles("https://management.azure.com/") is None
    assert await roles(API) == ["Secrets.Read", "Secrets.Write"]  # app roles of the lab API


@pytest.mark.parametrize("selector", ["client_id", "object_id", "msi_res_id", "mi_res_id"])
async def test_selectors_pick_a_user_assigned_identity(
    apps: Apps, lab_config: LabConfig, selector: str
) -> None:
    reader = lab_config.identity("reader-id")
    value = {"client_id": reader.client_id, "object_id": reader.object_id}.get(
        selector, reader.resource_id
    )
    params = _query(resource=API, **{selector: value.upper()})
    response = await apps.imds.get(TOKEN, params=params, headers=META)
    assert response.status_code == 200
    assert response.json()["client_id"] == reader.client_id
    claims = _claims(response.json()["access_token"])
    assert (claims["oid"], claims["xms_mirid"]) == (reader.object_id, reader.resource_id)
    assert claims["roles"] == ["Secrets.Read"]


async def test_token_cache_is_bounded(apps: Apps) -> None:
    apps.monotonic.advance(10_000)  # a full rate-limit bucket
    for i in range(MAX_CACHED_TOKENS + 3):
        apps.monotonic.advance(1)
        resource = f"https://made-up-{i}.example"
        response = await apps.imds.get(TOKEN, params=_query(resource=resource), headers=META)
        assert response.status_code == 200
    assert len(apps.tokens) == MAX_CACHED_TOKENS
    # the least recently used went first; the newest is still handed out again
    apps.monotonic.advance(1)
    newest = f"https://made-up-{MAX_CACHED_TOKENS + 2}.example"
    await apps.imds.get(TOKEN, params=_query(resource=newest), headers=META)
    assert apps.tokens.minted == MAX_CACHED_TOKENS + 3
    apps.monotonic.advance(1)
    await apps.imds.get(TOKEN, params=_query(resource="https://made-up-0.example"), headers=META)
    assert apps.tokens.minted == MAX_CACHED_TOKENS + 4


async def test_repeated_requests_get_the_same_token_until_it_nears_expiry(apps: Apps) -> None:
    first = (await apps.imds.get(TOKEN, params=_query(), headers=META)).json()
    apps.clock.advance(100)
    again = (await apps.imds.get(TOKEN, params=_query(), headers=META)).json()
    assert again["access_token"] == first["access_token"]
    assert int(again["expires_in"]) == int(first["expires_in"]) - 100
    assert again["expires_on"] == first["expires_on"]
    apps.clock.advance(86_400 - 100 - REUSE_MARGIN - 1)  # REUSE_MARGIN + 1 seconds left
    still = (await apps.imds.get(TOKEN, params=_query(), headers=META)).json()
    assert still["access_token"] == first["access_token"]
    assert int(still["expires_in"]) > 300  # MSAL would consider it expired below 300 s
    apps.clock.advance(2)
    fresh = (await apps.imds.get(TOKEN, params=_query(), headers=META)).json()
    assert fresh["access_token"] != first["access_token"]
    assert int(fresh["expires_in"]) == 86_400
    assert apps.tokens.minted == 2


async def test_cached_token_is_dropped_once_its_key_stops_signing(apps: Apps) -> None:
    first = (await apps.imds.get(TOKEN, params=_query(), headers=META)).json()
    new_kid = apps.issuer.keys.rotate(overlap=30, retire_after=30)
    during = (await apps.imds.get(TOKEN, params=_query(), headers=META)).json()
    assert during["access_token"] == first["access_token"]  # the old key still signs
    apps.clock.advance(30)
    after = (await apps.imds.get(TOKEN, params=_query(), headers=META)).json()
    assert jwt.get_unverified_header(after["access_token"])["kid"] == new_kid


SYSTEM_CLIENT_ID = "9d1e2f3a-4b5c-4d6e-8f7a-8b9c0d1e2f3a"
READER_CLIENT_ID = "b2c3d4e5-f6a7-4b8c-9d0e-1f2a3b4c5d6e"
READER_OBJECT_ID = "a1b2c3d4-e5f6-4a7b-8c9d-0e1f2a3b4c5d"
UNKNOWN_ID = "00000000-0000-4000-8000-000000000000"
UNKNOWN_MI = "/subscriptions/x/resourcegroups/y/providers/Microsoft.ManagedIdentity/x/z"
READER_MI = (
    "/subscriptions/0b1f6471-1bf0-4dda-aec3-111122223333/resourcegroups/tokenguard-rg"
    "/providers/Microsoft.ManagedIdentity/userAssignedIdentities/reader-id"
)
NO_HEADER = "Required metadata header not specified"
NOT_FOUND = "Identity not found"
BAD = "invalid_request"


@dataclass(frozen=True)
class Refusal:
    """A token request an endpoint refuses, and what its answer says."""

    params: dict[str, str] | tuple[tuple[str, str], ...]
    #: In IMDS's ``error_description``, in App Service's ``message``.
    says: str
    status: int = 400
    #: IMDS's ``error`` (App Service answers carry no code).
    error: str = BAD
    #: None: the header the endpoint requires, as a client sends it.
    headers: dict[str, str] | None = None
    method: str = "GET"

    async def send(
        self, client: httpx.AsyncClient, path: str, required: dict[str, str]
    ) -> httpx.Response:
        headers = required if self.headers is None else self.headers
        return await client.request(self.method, path, params=self.params, headers=headers)


def _selection_refusals(
    query: Callable[..., dict[str, str]],
    selectors: str,
    conflicts: dict[str, tuple[tuple[str, str], ...]],
    unknown: dict[str, str],
) -> dict[str, Refusal]:
    """The identity-selection rules both endpoints share, in one endpoint's spelling:
    ``conflicts`` (case -> the selectors sent) name more than one identity: 400 naming
    the endpoint's ``selectors``; an ``unknown`` selector (name -> value), or the system
    identity's client id, names no user-assigned identity: 404."""
    refusals = {
        case: Refusal((*query().items(), *sent), f"Specify at most one of {selectors}")
        for case, sent in conflicts.items()
    }
    for name, value in unknown.items():
        refusals[f"unknown {name}"] = Refusal(query(**{name: value}), NOT_FOUND, 404)
    system = Refusal(query(client_id=SYSTEM_CLIENT_ID), NOT_FOUND, 404)
    return refusals | {"the system identity as a selector": system}


IMDS_REFUSALS = {
    "no Metadata header": Refusal(_query(), NO_HEADER, headers={}),
    "Metadata false": Refusal(_query(), NO_HEADER, headers={"Metadata": "false"}),
    "missing resource": Refusal(
        {"api-version": "2018-02-01"}, "Required query variable 'resource' is missing"
    ),
    "missing api-version": Refusal(
        {"resource": VAULT}, "Required query variable 'api-version' is missing"
    ),
    "unknown api-version": Refusal(_query(**{"api-version": "2099-01-01"}), "Invalid api-version"),
    "a scope, not a resource": Refusal(
        _query(resource=VAULT + "/.default"), "AADSTS500011", error="invalid_resource"
    ),
    "no URI": Refusal(_query(resource="vault"), "AADSTS500011", error="invalid_resource"),
    "POST": Refusal(_query(), "Method not allowed", 405, method="POST"),
    "resource too long": Refusal(
        _query(resource="https://x.example/" + "a" * MAX_RESOURCE_LENGTH),
        "longer than",
        error="invalid_resource",
    ),
    "empty": Refusal(_query(client_id=""), "client_id parameter is empty"),
    "empty mi": Refusal(_query(mi_res_id=""), "mi_res_id parameter is empty"),
    "App Service spelling": Refusal(
        _query(principal_id=READER_OBJECT_ID), "does not read principal_id; use object_id"
    ),
    "X-Forwarded-For": Refusal(
        _query(), "X-Forwarded-For", headers={**META, "X-Forwarded-For": "203.0.113.7"}
    ),
    **_selection_refusals(
        _query,
        "client_id, object_id, msi_res_id, mi_res_id",
        {
            "two selectors": (("client_id", READER_CLIENT_ID), ("object_id", READER_OBJECT_ID)),
            "msi_res_id and mi_res_id": (("msi_res_id", READER_MI), ("mi_res_id", READER_MI)),
            "client_id twice": (("client_id", READER_CLIENT_ID), ("client_id", UNKNOWN_ID)),
        },
        {
            "object_id": UNKNOWN_ID,
            "mi_res_id": UNKNOWN_MI,
            "client_id": UNKNOWN_ID,
            "msi_res_id": UNKNOWN_MI,
        },
    ),
}


@pytest.mark.parametrize("refusal", IMDS_REFUSALS.values(), ids=list(IMDS_REFUSALS))
async def test_bad_requests_get_the_documented_status_and_json_error(
    apps: Apps, refusal: Refusal
) -> None:
    response = await refusal.send(apps.imds, TOKEN, META)
    assert response.status_code == refusal.status
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert {"error", "error_description"} <= set(body)
    assert set(body) <= {"error", "error_description", "newest-versions"}
    assert body["error"] == refusal.error
    assert refusal.says in body["error_description"]
    assert apps.tokens.minted == 0
    if refusal.status == 405:
        assert response.headers["allow"] == "GET"


async def test_rate_limit_per_identity(apps: Apps, lab_config: LabConfig) -> None:
    for _ in range(5):  # a burst of rate_limit requests passes
        assert (await apps.imds.get(TOKEN, params=_query(), headers=META)).status_code == 200
    limited = await apps.imds.get(TOKEN, params=_query(), headers=META)
    assert limited.status_code == 429
    assert limited.headers["retry-after"] == "1"
    assert limited.json()["error"] == "too_many_requests"
    reader = lab_config.identity("reader-id")
    other = await apps.imds.get(TOKEN, params=_query(client_id=reader.client_id), headers=META)
    assert other.status_code == 200  # another identity has its own budget
    apps.monotonic.advance(0.2)  # one request's worth at 5 per second
    assert (await apps.imds.get(TOKEN, params=_query(), headers=META)).status_code == 200
    assert (await apps.imds.get(TOKEN, params=_query(), headers=META)).status_code == 429


async def test_identity_info_instance_and_versions(apps: Apps, lab_config: LabConfig) -> None:
    version = {"api-version": "2021-02-01"}
    info = await apps.imds.get("/metadata/identity/info", params=version, headers=META)
    assert info.json() == {"tenantId": lab_config.tenant_id}
    instance = (await apps.imds.get("/metadata/instance", params=version, headers=META)).json()
    compute = instance["compute"]
    assert (compute["name"], compute["vmId"]) == (lab_config.vm.name, lab_config.vm.vm_id)
    assert compute["resourceId"] == lab_config.vm.resource_id
    assert compute["subscriptionId"] == lab_config.vm.subscription_id
    ip = instance["network"]["interface"][0]["ipv4"]["ipAddress"][0]["privateIpAddress"]
    assert ip == lab_config.vm.private_ip
    name = await apps.imds.get(
        "/metadata/instance/compute/name", params={**version, "format": "text"}, headers=META
    )
    assert (name.status_code, name.text) == (200, lab_config.vm.name)
    nested = await apps.imds.get(
        "/metadata/instance/network/interface/0/ipv4", params=version, headers=META
    )
    assert nested.json()["ipAddress"][0]["privateIpAddress"] == lab_config.vm.private_ip
    versions = (await apps.imds.get("/metadata/versions", headers=META)).json()
    assert "2018-02-01" in versions["apiVersions"]


async def test_metadata_paths_check_headers_and_unknown_paths(apps: Apps) -> None:
    version = {"api-version": "2021-02-01"}
    assert (await apps.imds.get("/metadata/instance", params=version)).status_code == 400
    assert (await apps.imds.get("/metadata/instance", headers=META)).status_code == 400
    assert (await apps.imds.get("/metadata/versions")).status_code == 400
    missing = await apps.imds.get("/metadata/instance/compute/nope", params=version, headers=META)
    assert (missing.status_code, missing.json()["error"]) == (404, "not_found")
    unknown = await apps.imds.get("/somewhere/else", headers=META)
    assert (unknown.status_code, unknown.json()["error"]) == (404, "not_found")
    leaf = await apps.imds.get(
        "/metadata/instance/compute", params={**version, "format": "text"}, headers=META
    )
    assert leaf.status_code == 400


# -- App Service flavour -----------------------------------------------------------

APP_SERVICE = "/msi/token"
SECRET = {"X-IDENTITY-HEADER": IDENTITY_HEADER}


def _app_query(**extra: str) -> dict[str, str]:
    return {"api-version": "2019-08-01", "resource": VAULT, **extra}


async def test_app_service_answer_has_expires_on_but_no_expires_in(
    apps: Apps, lab_config: LabConfig
) -> None:
    response = await apps.app_service.get(APP_SERVICE, params=_app_query(), headers=SECRET)
    assert response.status_code == 200
    body = response.json()
    assert sorted(body) == ["access_token", "client_id", "expires_on", "resource", "token_type"]
    assert body["expires_on"] == str(int(apps.clock.now) + 86_400)
    assert body["client_id"] == lab_config.vm.identity.client_id
    assert _claims(body["access_token"])["xms_mirid"] == lab_config.vm.identity.resource_id


@pytest.mark.parametrize("selector", ["client_id", "principal_id", "object_id", "mi_res_id"])
async def test_app_service_selectors(apps: Apps, lab_config: LabConfig, selector: str) -> None:
    reader = lab_config.identity("reader-id")
    value = {"client_id": reader.client_id, "mi_res_id": reader.resource_id}.get(
        selector, reader.object_id
    )
    response = await apps.app_service.get(
        APP_SERVICE, params=_app_query(**{selector: value}), headers=SECRET
    )
    assert response.status_code == 200
    assert _claims(response.json()["access_token"])["oid"] == reader.object_id


APP_SERVICE_REFUSALS = {
    "none": Refusal(_app_query(), "X-IDENTITY-HEADER header is required", headers={}),
    "wrong header": Refusal(_app_query(), "not valid", 401, headers={"X-IDENTITY-HEADER": "guess"}),
    "IMDS api-version": Refusal(
        _app_query(**{"api-version": "2018-02-01"}), "api-version must be 2019-08-01"
    ),
    "missing resource": Refusal({"api-version": "2019-08-01"}, "resource parameter is required"),
    "a scope": Refusal(_app_query(resource=VAULT + "/.default"), "AADSTS500011"),
    "empty": Refusal(_app_query(principal_id=""), "principal_id parameter is empty"),
    "IMDS spelling": Refusal(
        _app_query(msi_res_id=READER_MI), "does not read msi_res_id; use mi_res_id"
    ),
    "POST": Refusal(_app_query(), "Method not allowed", 405, method="POST"),
    **_selection_refusals(
        _app_query,
        "client_id, principal_id, object_id, mi_res_id",
        {
            "two selectors": (("client_id", READER_CLIENT_ID), ("principal_id", READER_OBJECT_ID)),
            "principal_id and its alias": (
                ("principal_id", READER_OBJECT_ID),
                ("object_id", READER_OBJECT_ID),
            ),
            "mi_res_id twice": (("mi_res_id", READER_MI), ("mi_res_id", READER_MI)),
        },
        {"client_id": UNKNOWN_ID, "principal_id": UNKNOWN_ID, "mi_res_id": UNKNOWN_MI},
    ),
}


@pytest.mark.parametrize("refusal", APP_SERVICE_REFUSALS.values(), ids=list(APP_SERVICE_REFUSALS))
async def test_app_service_refusals(apps: Apps, refusal: Refusal) -> None:
    response = await refusal.send(apps.app_service, APP_SERVICE, SECRET)
    assert response.status_code == refusal.status
    body = response.json()
    assert sorted(body) == ["correlationId", "message", "statusCode"]
    assert body["statusCode"] == refusal.status
    assert refusal.says in body["message"]
    assert apps.tokens.minted == 0


async def test_app_service_unknown_path(apps: Apps) -> None:
    response = await apps.app_service.get("/other", headers=SECRET)
    assert response.status_code == 404


@pytest.mark.parametrize(
    "index",
    [
        "\u00b2",  # "²".isdigit() is true but int("²") fails: this used to answer 500
        "9" * 5000,  # past int()'s 4300-digit limit: this used to answer 500 too
        "99",
    ],
)
async def test_odd_list_indexes_in_metadata_paths_are_not_found(apps: Apps, index: str) -> None:
    version = {"api-version": "2021-02-01"}
    path = f"/metadata/instance/network/interface/{index}"
    response = await apps.imds.get(path, params=version, headers=META)
    assert response.status_code == 404
