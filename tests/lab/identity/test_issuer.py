"""The Entra-like issuer: discovery documents, JWKS, token shape, admin routes."""

from __future__ import annotations

from typing import Any

import httpx
import jwt
import pytest
from examples.lab.identity import ADMIN_HEADER, LabConfig

from tokenguard import InvalidToken, Issuer, TokenValidator

from .conftest import ADMIN_SECRET, Apps

pytestmark = [pytest.mark.lab, pytest.mark.anyio]

TENANT = "72f988bf-0000-4000-8000-00000000ab1e"
VAULT = "https://vault.azure.net"
STORAGE = "https://storage.azure.com/"
ARM = "https://management.azure.com/"
API = "api://tokenguard-lab-api"
API_NAME = "tokenguard-lab-api"
API_APP_ID = "6e1f0c2a-9b8d-4c7e-a5f4-3d2c1b0a9f8e"
READ, WRITE = "Secrets.Read", "Secrets.Write"
ADMIN = {ADMIN_HEADER: ADMIN_SECRET}


async def test_v1_discovery_document(apps: Apps) -> None:
    response = await apps.metadata.get(f"/{TENANT}/.well-known/openid-configuration")
    assert response.status_code == 200
    doc = response.json()
    assert doc["issuer"] == f"https://sts.windows.net/{TENANT}/"
    assert doc["jwks_uri"] == f"http://127.0.0.1:8700/{TENANT}/discovery/keys"
    assert doc["id_token_signing_alg_values_supported"] == ["RS256"]
    assert response.headers["cache-control"] == "max-age=3600, private"
    assert response.headers["content-type"].startswith("application/json")


async def test_v2_and_common_discovery_documents(apps: Apps) -> None:
    v2 = (await apps.metadata.get(f"/{TENANT}/v2.0/.well-known/openid-configuration")).json()
    assert v2["issuer"] == f"https://login.microsoftonline.com/{TENANT}/v2.0"
    assert v2["jwks_uri"] == f"http://127.0.0.1:8700/{TENANT}/discovery/v2.0/keys"
    common = (await apps.metadata.get("/common/.well-known/openid-configuration")).json()
    assert common["issuer"] == "https://sts.windows.net/{tenantid}/"
    assert common["jwks_uri"] == "http://127.0.0.1:8700/common/discovery/keys"
    common_v2 = (await apps.metadata.get("/common/v2.0/.well-known/openid-configuration")).json()
    assert common_v2["issuer"] == "https://login.microsoftonline.com/{tenantid}/v2.0"


async def test_jwks_is_shaped_like_entras(apps: Apps) -> None:
    kid = apps.issuer.keys.signing().kid
    for path in (f"/{TENANT}/discovery/keys", "/common/discovery/keys"):
        response = await apps.metadata.get(path)
        assert response.headers["cache-control"] == "max-age=3600, private"
        [key] = response.json()["keys"]
        assert list(key) == ["kty", "use", "kid", "x5t", "n", "e", "x5c"]
        assert key["kid"] == key["x5t"] == kid
    [v2] = (await apps.metadata.get(f"/{TENANT}/discovery/v2.0/keys")).json()["keys"]
    assert v2["issuer"] == f"https://login.microsoftonline.com/{TENANT}/v2.0"


async def test_jwks_answers_304_to_its_etag(apps: Apps) -> None:
    first = await apps.metadata.get(f"/{TENANT}/discovery/keys")
    again = await apps.metadata.get(
        f"/{TENANT}/discovery/keys", headers={"If-None-Match": first.headers["etag"]}
    )
    assert again.status_code == 304
    apps.issuer.keys.rotate(overlap=0, retire_after=0)
    changed = await apps.metadata.get(
        f"/{TENANT}/discovery/keys", headers={"If-None-Match": first.headers["etag"]}
    )
    assert changed.status_code == 200
    assert changed.headers["etag"] != first.headers["etag"]


async def test_unknown_tenant_is_refused_like_entra(apps: Apps) -> None:
    for path in (
        "/11111111-2222-4333-8444-555555555555/.well-known/openid-configuration",
        "/contoso.example/discovery/keys",
    ):
        response = await apps.metadata.get(path)
        assert response.status_code == 400
        assert response.json()["error"] == "invalid_tenant"


async def test_token_endpoint_points_to_imds(apps: Apps) -> None:
    response = await apps.metadata.post(f"/{TENANT}/oauth2/token", data={"grant_type": "x"})
    assert response.status_code == 400
    assert response.json()["error"] == "unsupported_grant_type"


async def test_minted_token_has_the_managed_identity_shape(
    apps: Apps, lab_config: LabConfig
) -> None:
    vm = lab_config.vm.identity
    issued = apps.issuer.mint(vm, VAULT)
    header = jwt.get_unverified_header(issued.token)
    kid = apps.issuer.keys.signing().kid
    assert header == {"typ": "JWT", "alg": "RS256", "x5t": kid, "kid": kid}
    claims = jwt.decode(issued.token, options={"verify_signature": False})
    assert list(claims) == [
        "aud", "iss", "iat", "nbf", "exp", "aio", "appid", "appidacr", "idp", "idtyp", "oid",
        "rh", "sub", "tid", "uti", "ver", "xms_mirid", "xms_tcdt",
    ]  # fmt: skip
    assert claims["aud"] == VAULT
    assert claims["iss"] == claims["idp"] == f"https://sts.windows.net/{TENANT}/"
    assert claims["oid"] == claims["sub"] == vm.object_id
    assert claims["appid"] == vm.client_id
    assert (claims["tid"], claims["idtyp"], claims["ver"]) == (TENANT, "app", "1.0")
    assert claims["xms_mirid"] == vm.resource_id
    assert claims["iat"] == claims["nbf"] == int(apps.clock.now)
    assert claims["exp"] - claims["iat"] == 86_400
    other = jwt.decode(apps.issuer.mint(vm, VAULT).token, options={"verify_signature": False})
    assert other["uti"] != claims["uti"]


def _claims(token: str) -> dict[str, Any]:
    return jwt.decode(token, options={"verify_signature": False})


async def test_tokens_for_azure_resources_carry_no_roles(apps: Apps, lab_config: LabConfig) -> None:
    # Key Vault Officer, Storage Contributor...: RBAC, checked by the resource by oid.
    for identity in lab_config.all_identities:
        for resource in (VAULT, STORAGE, "https://storage.azure.com", ARM, "api://unregistered"):
            claims = _claims(apps.issuer.mint(identity, resource).token)
            assert "roles" not in claims
            assert "scp" not in claims


async def test_api_tokens_carry_exactly_the_assigned_app_roles(
    apps: Apps, lab_config: LabConfig
) -> None:
    vm, reader, norole = lab_config.all_identities
    for resource in (API, API + "/", API.upper(), API_APP_ID):  # its URI or its client id
        assert _claims(apps.issuer.mint(vm, resource).token)["roles"] == [READ, WRITE]
    api_token = _claims(apps.issuer.mint(reader, API).token)
    assert api_token["roles"] == [READ]
    assert (api_token["aud"], api_token["ver"]) == (API, "1.0")
    assert api_token["iss"] == f"https://sts.windows.net/{TENANT}/"
    assert "roles" not in _claims(apps.issuer.mint(norole, API).token)


async def test_v2_api_tokens_have_the_v2_shape(apps: Apps, lab_config: LabConfig) -> None:
    reader = lab_config.identity("reader-id")
    registered = await apps.metadata.put(
        f"/_lab/apps/{API_NAME}",
        json={
            "app_id": API_APP_ID,
            "identifier_uri": API,
            "app_roles": [READ, WRITE],
            "token_version": 2,
        },
        headers=ADMIN,
    )
    assert registered.status_code == 200
    claims = _claims(apps.issuer.mint(reader, API).token)
    assert list(claims) == [
        "aud", "iss", "iat", "nbf", "exp", "aio", "azp", "azpacr", "idtyp", "oid", "rh",
        "roles", "sub", "tid", "uti", "ver", "xms_mirid", "xms_tcdt",
    ]  # fmt: skip
    assert claims["aud"] == API_APP_ID  # the client id, whichever name was requested
    assert claims["iss"] == f"https://login.microsoftonline.com/{TENANT}/v2.0"
    assert (claims["azp"], claims["ver"], claims["roles"]) == (reader.client_id, "2.0", [READ])
    # the v2 key set names the same issuer, so a v2 validator accepts the token
    v2 = Issuer(
        issuer=claims["iss"], audiences=(API_APP_ID,), discovery_url=apps.issuer.discovery_url_v2
    )
    transport = httpx.ASGITransport(app=apps.issuer.app())
    async with (
        httpx.AsyncClient(transport=transport) as http,
        TokenValidator([v2], http_client=http, clock=apps.clock) as validator,
    ):
        identity = await validator.validate(apps.issuer.mint(reader, API).token)
    assert (identity.app_id, identity.roles) == (reader.client_id, frozenset({READ}))


async def test_tokenguard_validates_the_lab_tokens(apps: Apps, lab_config: LabConfig) -> None:
    reader = lab_config.identity("reader-id")
    issuer = Issuer(  # as Key Vault would: its tokens carry no roles
        issuer=apps.issuer.issuer,
        audiences=(VAULT,),
        discovery_url=apps.issuer.discovery_url,
        require_roles_or_scopes=False,
    )
    transport = httpx.ASGITransport(app=apps.issuer.app())
    async with (
        httpx.AsyncClient(transport=transport) as http,
        TokenValidator([issuer], http_client=http, clock=apps.clock) as validator,
    ):
        identity = await validator.validate(apps.issuer.mint(reader, VAULT).token)
        assert identity.kind == "managed_identity"
        assert identity.object_id == reader.object_id
        assert identity.mi_resource_id == reader.resource_id
        assert identity.roles == frozenset()  # Key Vault finds the reader's role by oid
        forged = apps.issuer.forge(reader, VAULT)
        with pytest.raises(InvalidToken) as caught:
            await validator.validate(forged)
        assert caught.value.reason == "bad_signature"


async def test_admin_routes_need_the_secret_and_loopback(apps: Apps) -> None:
    assert (await apps.metadata.get("/_lab/keys")).status_code == 403
    wrong = await apps.metadata.get("/_lab/keys", headers={ADMIN_HEADER: "guess"})
    assert wrong.status_code == 403
    remote = httpx.ASGITransport(app=apps.issuer.app(), client=("10.0.0.9", 4000))
    async with httpx.AsyncClient(transport=remote, base_url="http://lab") as outsider:
        refused = await outsider.get("/_lab/keys", headers={ADMIN_HEADER: ADMIN_SECRET})
        assert refused.status_code == 403
    listed = await apps.metadata.get("/_lab/keys", headers={ADMIN_HEADER: ADMIN_SECRET})
    assert listed.status_code == 200
    assert [k["state"] for k in listed.json()["keys"]] == ["signing"]


async def test_admin_rotate(apps: Apps) -> None:
    old = apps.issuer.keys.signing().kid
    response = await apps.metadata.post(
        "/_lab/rotate",
        json={"overlap": 10, "retire_after": 5},
        headers={ADMIN_HEADER: ADMIN_SECRET},
    )
    assert response.status_code == 200
    new = response.json()["kid"]
    assert [k["kid"] for k in response.json()["keys"]] == [old, new]
    keys = (await apps.metadata.get(f"/{TENANT}/discovery/keys")).json()["keys"]
    assert [k["kid"] for k in keys] == [old, new]
    assert apps.issuer.keys.signing().kid == old
    apps.clock.advance(10)
    assert apps.issuer.keys.signing().kid == new
    apps.clock.advance(5)
    keys = (await apps.metadata.get(f"/{TENANT}/discovery/keys")).json()["keys"]
    assert [k["kid"] for k in keys] == [new]


@pytest.mark.parametrize(
    ("body", "status", "error"),
    [
        (b"not json", 400, "bad_request"),
        (b'{"overlap": -1}', 400, "bad_request"),
        (b'{"overlap": "soon"}', 400, "bad_request"),
        (b'{"overlap": NaN}', 400, "bad_request"),
        (b"[]", 400, "bad_request"),
        (b"[" * 2000 + b"]" * 2000, 400, "bad_request"),  # deeper than the JSON decoder goes
        (b'{"overlap": 1}' + b" " * 5000, 413, "too_large"),
    ],
)
async def test_admin_rotate_refuses_bad_bodies(
    apps: Apps, body: bytes, status: int, error: str
) -> None:
    response = await apps.metadata.post(
        "/_lab/rotate", content=body, headers={ADMIN_HEADER: ADMIN_SECRET}
    )
    assert response.status_code == status
    assert response.json()["error"] == error
    assert len(apps.issuer.keys.schedule) == 1


async def test_admin_app_role_assignments_change_the_next_tokens(
    apps: Apps, lab_config: LabConfig
) -> None:
    norole = lab_config.identity("norole-id")
    listed = (await apps.metadata.get("/_lab/apps", headers=ADMIN)).json()
    assert [a["name"] for a in listed["applications"]] == [API_NAME, "tokenguard-lab-swagger"]
    assert {(a["principal"], a["role"]) for a in listed["app_role_assignments"]} == {
        (lab_config.vm.identity.object_id, READ),
        (lab_config.vm.identity.object_id, WRITE),
        (lab_config.identity("reader-id").object_id, READ),
    }
    grant = {"principal": "norole-id", "app": API_NAME, "role": WRITE}
    made = await apps.metadata.post("/_lab/app-role-assignments", json=grant, headers=ADMIN)
    assert (made.status_code, made.json()["principal"]) == (201, norole.object_id)
    again = await apps.metadata.post("/_lab/app-role-assignments", json=grant, headers=ADMIN)
    assert again.status_code == 200  # already held
    assert _claims(apps.tokens.token(norole, API).token)["roles"] == [WRITE]
    removed = await apps.metadata.request(
        "DELETE", "/_lab/app-role-assignments", json=grant, headers=ADMIN
    )
    assert removed.status_code == 204
    # the cached token predates the removal: IMDS hands out a new one without the role
    assert "roles" not in _claims(apps.tokens.token(norole, API).token)
    gone = await apps.metadata.request(
        "DELETE", "/_lab/app-role-assignments", json=grant, headers=ADMIN
    )
    assert gone.status_code == 404


@pytest.mark.parametrize(
    ("path", "method", "body", "message"),
    [
        ("/_lab/app-role-assignments", "POST", {"principal": "x"}, "expected"),
        (
            "/_lab/app-role-assignments",
            "POST",
            {"principal": "nobody", "app": API_NAME, "role": READ},
            "neither a lab identity",
        ),
        (
            "/_lab/app-role-assignments",
            "POST",
            {"principal": "norole-id", "app": "other-api", "role": READ},
            "no app registration 'other-api'",
        ),
        (
            "/_lab/app-role-assignments",
            "POST",
            {"principal": "norole-id", "app": API_NAME, "role": "Secrets.Admin"},
            "has no app role 'Secrets.Admin'",
        ),
        ("/_lab/apps/other-api", "PUT", {"app_id": "nope"}, "not a GUID"),
        ("/_lab/apps/other-api", "PUT", {"app_id": API_APP_ID}, "is 'tokenguard-lab-api'"),
        (
            "/_lab/apps/other-api",
            "PUT",
            {"app_id": "0000aaaa-1111-4222-8333-444455556666", "identifier_uri": VAULT},
            "an Azure service's",
        ),
        (
            "/_lab/apps/other-api",
            "PUT",
            {"app_id": "0000aaaa-1111-4222-8333-444455556666", "app_roles": ["two words"]},
            "not valid",
        ),
        (
            "/_lab/apps/other-api",
            "PUT",
            {"app_id": "0000aaaa-1111-4222-8333-444455556666", "token_version": 3},
            "1 or 2",
        ),
        ("/_lab/apps/other-api", "PUT", {"app_id": API_APP_ID, "owner": "me"}, "expected"),
    ],
)
async def test_admin_app_routes_refuse_bad_requests(
    apps: Apps, path: str, method: str, body: dict[str, Any], message: str
) -> None:
    before = apps.issuer.apps.as_json()
    response = await apps.metadata.request(method, path, json=body, headers=ADMIN)
    assert response.status_code == 400
    assert response.json()["error"] == "bad_request"
    assert message in response.json()["error_description"]
    assert apps.issuer.apps.as_json() == before


async def test_admin_routes_are_absent_without_a_secret(apps: Apps) -> None:
    apps.issuer.admin_secret = None
    response = await apps.metadata.get("/_lab/keys", headers={ADMIN_HEADER: ADMIN_SECRET})
    assert response.status_code == 404
