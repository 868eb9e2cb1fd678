"""examples/fastapi_service.py: an API of its own, authorizing by the app roles in its tokens."""

from __future__ import annotations

from pathlib import Path

import httpx
import jwt
import pytest
from examples.fastapi_service import (
    API_AUDIENCE,
    LAB_SWAGGER_CLIENT,
    LAB_TENANT,
    Settings,
    create_app,
)
from examples.lab.runtime import Lab
from starlette.testclient import TestClient

from tokenguard.metrics import PrometheusObserver
from tokenguard.testing import LocalIssuer

from ..helpers import bearer
from ._signin import PublicClient, pkce

MI_ID = (
    "/subscriptions/00000000-0000-0000-0000-000000000001/resourcegroups/rg/providers/"
    "Microsoft.ManagedIdentity/userAssignedIdentities/reporter"
)
READ, WRITE = "Secrets.Read", "Secrets.Write"


def test_settings_from_env() -> None:
    defaults = Settings.from_env({})
    assert defaults.issuer == f"https://sts.windows.net/{LAB_TENANT}/"
    assert defaults.discovery_url == (
        f"http://127.0.0.1:8700/{LAB_TENANT}/.well-known/openid-configuration"
    )
    assert defaults.audience == API_AUDIENCE == "api://tokenguard-lab-api"
    lab = Settings.from_env(
        {"LAB_ISSUER": "https://i/", "LAB_DISCOVERY_URL": "http://127.0.0.1:1/d"}
    )
    assert (lab.issuer, lab.discovery_url) == ("https://i/", "http://127.0.0.1:1/d")
    chosen = Settings.from_env(
        {
            "TOKENGUARD_ISSUER": "https://a/",
            "TOKENGUARD_DISCOVERY_URL": "https://b/d",
            "TOKENGUARD_AUDIENCE": "api://c",
            "LAB_ISSUER": "https://ignored/",
        }
    )
    assert (chosen.issuer, chosen.discovery_url, chosen.audience) == (
        "https://a/",
        "https://b/d",
        "api://c",
    )
    assert defaults.signin_discovery_url == (
        f"http://127.0.0.1:8700/{LAB_TENANT}/v2.0/.well-known/openid-configuration"
    )
    assert defaults.swagger_client_id == LAB_SWAGGER_CLIENT
    [trusted] = chosen.validator().issuers
    assert trusted.audiences == ("api://c",)
    assert trusted.require_roles_or_scopes  # an app-role API refuses permissionless tokens


def test_routes_check_app_roles(issuer: LocalIssuer) -> None:
    observer = PrometheusObserver()
    validator = issuer.validator([API_AUDIENCE], observer=observer, require_roles_or_scopes=True)
    app = create_app(validator=validator, observer=observer)
    vm = bearer(issuer.mint(API_AUDIENCE, roles=[READ, WRITE], mi_resource_id=MI_ID))
    reader = bearer(issuer.mint(API_AUDIENCE, roles=[READ]))
    norole = bearer(issuer.mint(API_AUDIENCE))
    writer_user = bearer(issuer.mint(API_AUDIENCE, kind="user", roles=[READ, WRITE]))
    vault_token = bearer(issuer.mint("https://vault.azure.net", roles=[READ, WRITE]))
    with TestClient(app) as client:
        assert client.get("/healthz").status_code == 200
        assert client.get("/readyz").json()["ready"] is True
        assert client.get("/whoami").status_code == 401
        assert client.get("/whoami", headers=vm).json()["roles"] == [READ, WRITE]
        put = client.put("/secrets/db", json={"value": "s3cret"}, headers=vm)
        assert put.status_code == 200
        assert put.json() == {"name": "db", "value": "s3cret", "updated_by": "reporter"}
        assert client.get("/secrets/db", headers=reader).json()["value"] == "s3cret"
        assert client.get("/secrets", headers=reader).json() == ["db"]
        assert client.get("/secrets/nope", headers=reader).status_code == 404
        denied = client.put("/secrets/db", json={"value": "x"}, headers=reader)
        assert denied.status_code == 403
        assert denied.json()["error"] == "insufficient_scope"  # flat body: add_error_handler
        # No app role at all: refused before any route (require_roles_or_scopes).
        refused = client.get("/whoami", headers=norole)
        assert (refused.status_code, refused.json()["error"]) == (401, "invalid_token")
        # The write route takes managed identities only, whatever the roles.
        assert (
            client.put("/secrets/db", json={"value": "x"}, headers=writer_user).status_code == 403
        )
        # A token for another resource is not for this API, whatever it carries.
        assert client.get("/secrets", headers=vault_token).status_code == 401
        metrics = client.get("/metrics").text
        assert 'tokenguard_validations_total{outcome="valid",reason=""}' in metrics
        schema = client.get("/openapi.json").json()
    assert set(schema["paths"]) == {"/whoami", "/secrets", "/secrets/{name}"}
    assert schema["paths"]["/secrets/{name}"]["put"]["security"] == [{"bearer": []}]
    put_answers = schema["paths"]["/secrets/{name}"]["put"]["responses"]
    assert "401" in put_answers
    assert "roles Secrets.Write" in put_answers["403"]["description"]


@pytest.mark.lab
@pytest.mark.anyio
async def test_through_the_lab_with_app_role_tokens(tmp_path: Path) -> None:
    """Tokens for the API come from the lab's IMDS with the assigned app roles, and only those."""
    async with Lab(tmp_path / "lab", base_port=0, log=None, services=()) as lab:
        imds = lab.urls.imds + "/metadata/identity/oauth2/token"

        async def imds_token(**selector: str) -> str:
            params = {"api-version": "2018-02-01", "resource": API_AUDIENCE, **selector}
            async with httpx.AsyncClient(trust_env=False) as http:
                response = await http.get(imds, params=params, headers={"Metadata": "true"})
            response.raise_for_status()
            token: str = response.json()["access_token"]
            return token

        reader_id = lab.config.identity("reader-id")
        norole_id = lab.config.identity("norole-id")
        tokens = {
            "vm": await imds_token(),  # the VM's system-assigned identity
            "reader": await imds_token(client_id=reader_id.client_id),
            "norole": await imds_token(object_id=norole_id.object_id),
        }
        roles = {
            who: jwt.decode(token, options={"verify_signature": False}).get("roles")
            for who, token in tokens.items()
        }
        assert roles == {"vm": [READ, WRITE], "reader": [READ], "norole": None}
        vm, reader, norole = (bearer(tokens[k]) for k in ("vm", "reader", "norole"))

        app = create_app(Settings.from_env(lab.env()))
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://service") as client:
            whoami = await client.get("/whoami", headers=vm)
            assert whoami.status_code == 200
            assert whoami.json()["kind"] == "managed_identity"
            assert whoami.json()["object_id"] == lab.config.vm.identity.object_id
            put = await client.put("/secrets/db", json={"value": "v"}, headers=vm)
            assert put.status_code == 200
            assert (await client.get("/secrets/db", headers=reader)).json()["value"] == "v"
            written = await client.put("/secrets/db", json={"value": "x"}, headers=reader)
            assert written.status_code == 403
            assert (await client.get("/secrets/db", headers=norole)).status_code == 401
            assert (await client.get("/secrets/db")).status_code == 401
            assert (await client.get("/readyz")).status_code == 200
        await app.state.tokenguard_validator.aclose()


def test_docs_are_served_without_a_cdn(issuer: LocalIssuer) -> None:
    app = create_app(validator=issuer.validator([API_AUDIENCE]))
    with TestClient(app) as client:
        page = client.get("/docs")
        assert page.status_code == 200
        assert "cdn" not in page.text.lower()
        assert "/docs/static/swagger-ui-bundle.js" in page.text
        assert "/docs/oauth2-redirect" in page.text
        for asset in ("swagger-ui-bundle.js", "swagger-ui.css"):
            assert client.get(f"/docs/static/{asset}").status_code == 200
        redirect = client.get("/docs/oauth2-redirect")
        assert redirect.status_code == 200 and "oauth2" in redirect.text
        # without sign-in endpoints: HTTP bearer, and no initOAuth on the page
        assert client.get("/openapi.json").json()["components"]["securitySchemes"] == {
            "bearer": {
                "type": "http",
                "scheme": "bearer",
                "bearerFormat": "JWT",
                "description": "Azure managed-identity or OIDC access token (JWT)",
            }
        }
        assert "initOAuth" not in page.text


@pytest.mark.lab
@pytest.mark.anyio
async def test_through_the_lab_with_a_signed_in_user(tmp_path: Path) -> None:
    """The service reads the lab's sign-in endpoints at startup; a user's token (code + PKCE,
    login_hint) reads secrets by its delegated scope and cannot write."""
    async with Lab(tmp_path / "lab", base_port=0, log=None, services=()) as lab:
        app = create_app(Settings.from_env(lab.env()))
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(
                transport=transport, base_url="http://127.0.0.1:8000"
            ) as client:
                schema = (await client.get("/openapi.json")).json()
                oauth2 = schema["components"]["securitySchemes"]["oauth2"]
                flow = oauth2["flows"]["authorizationCode"]
                document = lab.issuer.discovery_document(lab.config.tenant_id, "2.0")
                assert flow["authorizationUrl"] == document["authorization_endpoint"]
                assert flow["tokenUrl"] == document["token_endpoint"]
                read_scope = f"{API_AUDIENCE}/{READ}"
                assert list(flow["scopes"]) == [read_scope]
                get = schema["paths"]["/secrets/{name}"]["get"]
                assert get["security"] == [{"oauth2": [read_scope]}]
                page = (await client.get("/docs")).text
                assert LAB_SWAGGER_CLIENT in page and "usePkceWithAuthorizationCodeGrant" in page

                verifier, challenge = pkce()
                swagger_ui = PublicClient(
                    LAB_SWAGGER_CLIENT, "http://127.0.0.1:8000/docs/oauth2-redirect"
                )
                query = swagger_ui.authorize_query(
                    read_scope, challenge, login_hint="grace@tokenguard-lab.example"
                )
                async with httpx.AsyncClient(trust_env=False) as http:
                    back = await http.get(flow["authorizationUrl"], params=query)
                    code = swagger_ui.redirected(back)["code"]
                    form = swagger_ui.redeem_form(code, verifier)
                    answer = await http.post(flow["tokenUrl"], data=form)
                assert answer.status_code == 200, answer.text
                user = bearer(answer.json()["access_token"])
                whoami = (await client.get("/whoami", headers=user)).json()
                assert whoami["kind"] == "user"
                grace = lab.config.user("grace@tokenguard-lab.example")
                assert grace is not None and whoami["object_id"] == grace.object_id
                assert whoami["scopes"] == [READ] and whoami["roles"] == []
                assert (await client.get("/secrets", headers=user)).status_code == 200
                put = await client.put("/secrets/x", json={"value": "v"}, headers=user)
                assert put.status_code == 403
