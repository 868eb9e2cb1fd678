"""The issuer's sign-in endpoints: authorization code with PKCE, the rules and their errors."""

from __future__ import annotations

import dataclasses

import httpx
import jwt
import pytest
from examples.lab.identity import CODE_LIFETIME, MAX_FORM_BODY, AppRegistration, LabConfig

from tokenguard import Issuer, TokenValidator

from .._signin import PublicClient, pkce
from .conftest import Apps

pytestmark = pytest.mark.anyio

TENANT = "72f988bf-0000-4000-8000-00000000ab1e"
AUTHORIZE = f"/{TENANT}/oauth2/v2.0/authorize"
TOKEN = f"/{TENANT}/oauth2/v2.0/token"
SWAGGER = "0d9b6c5e-2f4a-4e1b-9c8d-7a6b5c4d3e2f"
API = "api://tokenguard-lab-api"
REDIRECT = "http://127.0.0.1:8123/docs/oauth2-redirect"
ADA = "ada@tokenguard-lab.example"
ADA_OID = "e1f2a3b4-c5d6-4e7f-8a9b-0c1d2e3f4a5b"
SWAGGER_UI = PublicClient(SWAGGER, REDIRECT)
#: The query sent back to Swagger UI's redirect URI (asserting it went there).
back = SWAGGER_UI.redirected
#: Swagger UI's form redeeming a code.
redeem_form = SWAGGER_UI.redeem_form


def authorize_params(challenge: str, **changes: str | None) -> dict[str, str]:
    """Ada's sign-in for the lab API's Secrets.Read, with ``state`` "xyz"."""
    changes = {"state": "xyz", "login_hint": ADA, **changes}
    return SWAGGER_UI.authorize_query(f"{API}/Secrets.Read openid", challenge, **changes)


async def get_code(apps: Apps, challenge: str, **changes: str | None) -> str:
    answer = back(await apps.metadata.get(AUTHORIZE, params=authorize_params(challenge, **changes)))
    assert answer["state"] == "xyz"
    return answer["code"]


async def test_discovery_names_the_endpoints(apps: Apps) -> None:
    document = (await apps.metadata.get(f"/{TENANT}/v2.0/.well-known/openid-configuration")).json()
    assert document["authorization_endpoint"] == "http://127.0.0.1:8700" + AUTHORIZE
    assert document["token_endpoint"] == "http://127.0.0.1:8700" + TOKEN


async def test_login_hint_code_and_verifier_give_a_user_token(apps: Apps) -> None:
    verifier, challenge = pkce()
    code = await get_code(apps, challenge)
    response = await apps.metadata.post(TOKEN, data=redeem_form(code, verifier))
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert body["token_type"] == "Bearer"
    assert body["scope"] == f"{API}/Secrets.Read"
    claims = jwt.decode(body["access_token"], options={"verify_signature": False})
    # The lab API accepts v1 tokens (its registration says so): the v1 shape of a user's.
    assert claims["aud"] == API
    assert claims["iss"] == f"https://sts.windows.net/{TENANT}/"
    assert claims["scp"] == "Secrets.Read"
    assert (claims["appid"], claims["oid"], claims["tid"]) == (SWAGGER, ADA_OID, TENANT)
    assert (claims["name"], claims["upn"], claims["ver"]) == ("Ada Lovelace", ADA, "1.0")
    assert "roles" not in claims and "idtyp" not in claims


async def test_a_v2_api_gets_v2_user_tokens_accepted_by_tokenguard(
    apps: Apps, lab_config: LabConfig
) -> None:
    api = apps.issuer.apps.app("tokenguard-lab-api")
    apps.issuer.apps.register(dataclasses.replace(api, token_version=2))
    verifier, challenge = pkce()
    code = await get_code(apps, challenge, scope=f"{API}/.default")
    token = (await apps.metadata.post(TOKEN, data=redeem_form(code, verifier))).json()
    claims = jwt.decode(token["access_token"], options={"verify_signature": False})
    assert claims["iss"] == f"https://login.microsoftonline.com/{TENANT}/v2.0"
    assert (claims["aud"], claims["azp"], claims["ver"]) == (api.app_id, SWAGGER, "2.0")
    assert claims["preferred_username"] == ADA and claims["name"] == "Ada Lovelace"
    assert claims["scp"] == "Secrets.Read"  # .default: every scope the API exposes
    validator = TokenValidator(
        [
            Issuer(
                issuer=claims["iss"],
                audiences=(api.app_id,),
                discovery_url=apps.issuer.discovery_url_v2,
                require_roles_or_scopes=True,
            )
        ],
        http_client=apps.metadata,
        clock=apps.clock,
    )
    identity = await validator.validate(token["access_token"])
    await validator.aclose()
    assert identity.kind == "user"
    assert identity.scopes == frozenset({"Secrets.Read"})
    assert identity.object_id == ADA_OID


async def test_the_page_lists_users_and_a_click_signs_in(apps: Apps) -> None:
    verifier, challenge = pkce()
    page = await apps.metadata.get(AUTHORIZE, params=authorize_params(challenge, login_hint=None))
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    for user in apps.issuer.config.users:
        assert f"Sign in as {user.name}" in page.text
    form = authorize_params(challenge, login_hint=None) | {"user": ADA_OID}
    code = back(await apps.metadata.post(AUTHORIZE, data=form))["code"]
    response = await apps.metadata.post(TOKEN, data=redeem_form(code, verifier))
    assert response.status_code == 200


@pytest.mark.parametrize(
    ("changes", "error"),
    [
        ({"response_type": "token"}, "unsupported_response_type"),
        ({"response_type": None}, "invalid_request"),
        ({"code_challenge": None}, "invalid_request"),
        ({"code_challenge_method": "plain"}, "invalid_request"),
        ({"code_challenge_method": None}, "invalid_request"),
        ({"code_challenge": "short"}, "invalid_request"),
        ({"scope": "openid"}, "invalid_scope"),
        ({"scope": f"{API}/Secrets.Write"}, "invalid_scope"),  # a role, not an exposed scope
        ({"scope": "api://unknown/Read"}, "invalid_scope"),
        ({"login_hint": "nobody@example.com"}, "invalid_request"),
        ({"response_mode": "fragment"}, "invalid_request"),
    ],
)
async def test_bad_authorize_requests_go_back_with_an_error(
    apps: Apps, changes: dict[str, str | None], error: str
) -> None:
    _, challenge = pkce()
    answer = back(await apps.metadata.get(AUTHORIZE, params=authorize_params(challenge, **changes)))
    assert answer["error"] == error
    assert answer["state"] == "xyz"
    assert "code" not in answer


@pytest.mark.parametrize(
    "changes",
    [
        {"client_id": "00000000-0000-4000-8000-000000000000"},
        {"client_id": None},
        {"redirect_uri": "http://127.0.0.1:8123/elsewhere"},
        {"redirect_uri": "https://evil.example/docs/oauth2-redirect"},
        {"redirect_uri": None},
    ],
)
async def test_unknown_client_or_redirect_is_answered_on_the_page(
    apps: Apps, changes: dict[str, str | None]
) -> None:
    _, challenge = pkce()
    response = await apps.metadata.get(AUTHORIZE, params=authorize_params(challenge, **changes))
    assert response.status_code == 400
    assert "location" not in response.headers
    assert "invalid_" in response.text


async def test_loopback_redirect_uris_match_on_any_port(apps: Apps) -> None:
    _, challenge = pkce()
    other = "http://127.0.0.1:9/docs/oauth2-redirect"
    response = await apps.metadata.get(
        AUTHORIZE, params=authorize_params(challenge, redirect_uri=other)
    )
    assert response.headers["location"].startswith(other + "?code=")


async def test_codes_are_one_time(apps: Apps) -> None:
    verifier, challenge = pkce()
    code = await get_code(apps, challenge)
    assert (await apps.metadata.post(TOKEN, data=redeem_form(code, verifier))).status_code == 200
    again = await apps.metadata.post(TOKEN, data=redeem_form(code, verifier))
    assert (again.status_code, again.json()["error"]) == (400, "invalid_grant")


async def test_codes_expire(apps: Apps) -> None:
    verifier, challenge = pkce()
    code = await get_code(apps, challenge)
    apps.clock.now += CODE_LIFETIME
    response = await apps.metadata.post(TOKEN, data=redeem_form(code, verifier))
    assert response.json()["error"] == "invalid_grant"


@pytest.mark.parametrize(
    ("changes", "status", "error"),
    [
        ({"code_verifier": "x" * 43}, 400, "invalid_grant"),
        ({"code_verifier": "bad"}, 400, "invalid_grant"),
        ({"redirect_uri": "http://127.0.0.1:9/docs/oauth2-redirect"}, 400, "invalid_grant"),
        ({"code_verifier": None}, 400, "invalid_request"),
        ({"code": None}, 400, "invalid_request"),
        ({"client_id": "00000000-0000-4000-8000-000000000000"}, 401, "invalid_client"),
        ({"grant_type": "client_credentials"}, 400, "unsupported_grant_type"),
        ({"grant_type": None}, 400, "invalid_request"),
    ],
)
async def test_bad_redemptions(
    apps: Apps, changes: dict[str, str | None], status: int, error: str
) -> None:
    verifier, challenge = pkce()
    code = await get_code(apps, challenge)
    response = await apps.metadata.post(TOKEN, data=redeem_form(code, verifier, **changes))
    assert (response.status_code, response.json()["error"]) == (status, error)


async def test_a_code_is_bound_to_its_client(apps: Apps) -> None:
    other = AppRegistration(
        name="other-client",
        app_id="11111111-2222-4333-8444-555555555555",
        identifier_uri="api://other-client",
        app_roles=(),
        redirect_uris=(REDIRECT,),
    )
    apps.issuer.apps.register(other)
    verifier, challenge = pkce()
    code = await get_code(apps, challenge)
    response = await apps.metadata.post(
        TOKEN, data=redeem_form(code, verifier, client_id=other.app_id)
    )
    assert response.json()["error"] == "invalid_grant"


async def test_token_endpoint_bad_bodies(apps: Apps) -> None:
    big = await apps.metadata.post(
        TOKEN,
        content=b"a=" + b"x" * MAX_FORM_BODY,
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert (big.status_code, big.json()["error"]) == (413, "invalid_request")
    as_json = await apps.metadata.post(TOKEN, json={"grant_type": "authorization_code"})
    assert (as_json.status_code, as_json.json()["error"]) == (400, "invalid_request")
    repeated = await apps.metadata.post(
        TOKEN,
        content=b"grant_type=authorization_code&grant_type=authorization_code",
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert repeated.json()["error"] == "invalid_request"
    not_utf8 = await apps.metadata.post(
        TOKEN, content=b"code=\xff", headers={"content-type": "application/x-www-form-urlencoded"}
    )
    assert not_utf8.json()["error"] == "invalid_request"


async def test_cross_origin_redemption_only_from_the_clients_origin(apps: Apps) -> None:
    preflight = await apps.metadata.options(TOKEN, headers={"origin": "http://127.0.0.1:8123"})
    assert preflight.status_code == 204
    assert "X-Requested-With" in preflight.headers["access-control-allow-headers"]
    verifier, challenge = pkce()
    code = await get_code(apps, challenge)
    ok = await apps.metadata.post(
        TOKEN, data=redeem_form(code, verifier), headers={"origin": "http://127.0.0.1:8123"}
    )
    assert ok.status_code == 200
    assert ok.headers["access-control-allow-origin"] == "http://127.0.0.1:8123"
    code = await get_code(apps, challenge)
    refused = await apps.metadata.post(
        TOKEN, data=redeem_form(code, verifier), headers={"origin": "https://evil.example"}
    )
    assert refused.status_code == 400
    assert "access-control-allow-origin" not in refused.headers


async def test_unknown_tenant(apps: Apps) -> None:
    _, challenge = pkce()
    other = "/00000000-0000-4000-8000-000000000000/oauth2/v2.0"
    page = await apps.metadata.get(other + "/authorize", params=authorize_params(challenge))
    assert page.status_code == 400
    token = await apps.metadata.post(other + "/token", data={"grant_type": "authorization_code"})
    assert token.json()["error"] == "invalid_request"


async def test_a_repeated_authorize_parameter_is_refused(apps: Apps) -> None:
    _, challenge = pkce()
    query = httpx.QueryParams(authorize_params(challenge)).add("scope", "openid")
    response = await apps.metadata.get(AUTHORIZE, params=query)
    assert response.status_code == 400
    assert "location" not in response.headers


async def test_the_page_escapes_what_it_echoes(apps: Apps) -> None:
    _, challenge = pkce()
    page = await apps.metadata.get(
        AUTHORIZE, params=authorize_params(challenge, login_hint=None, state='"><script>')
    )
    assert "<script>" not in page.text
    assert "&quot;&gt;&lt;script&gt;" in page.text
