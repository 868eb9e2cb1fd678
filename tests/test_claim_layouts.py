"""Roles, scopes and kinds of tokens from servers other than Entra ID.

Token shapes follow each server's public documentation: Keycloak's ``realm_access`` /
``resource_access`` roles and its ``service-account-<client>`` user, Auth0's
``permissions`` and ``<client>@clients`` subject, Okta's ``scp`` list, ``cid`` and custom
``groups``, and RFC 9068's ``scope``, ``client_id`` and SCIM-style ``roles``.
"""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest
from fastapi import Depends, FastAPI, Request

from tokenguard import InvalidToken, Issuer, Requirement, TokenGuardMiddleware
from tokenguard.fastapi import TokenGuard
from tokenguard.testing import LocalIssuer

from .helpers import bearer

pytestmark = pytest.mark.anyio

KEYCLOAK = "https://keycloak.example.com/realms/orders"
AUTH0 = "https://orders.eu.auth0.com/"
OKTA = "https://orders.okta.com/oauth2/default"
RFC9068 = "https://as.example.com"


def token(
    issuer: LocalIssuer, audience: str | list[str], header_typ: str = "JWT", **claims: Any
) -> str:
    now = int(time.time())
    body = {"iss": issuer.issuer, "aud": audience, "iat": now, "exp": now + 300, **claims}
    return issuer.sign(body, headers={"typ": header_typ})


@pytest.fixture(scope="module")
def keycloak() -> LocalIssuer:
    return LocalIssuer(issuer=KEYCLOAK)


async def test_keycloak_realm_roles(keycloak: LocalIssuer) -> None:
    validator = keycloak.validator(
        "orders-api", roles_claim="realm_access.roles", scopes_claim="scope"
    )
    user = token(
        keycloak,
        "orders-api",
        sub="f2a1c3d4-0000-4000-8000-000000000001",
        typ="Bearer",
        azp="orders-web",
        acr="1",
        realm_access={"roles": ["offline_access", "uma_authorization", "orders-admin"]},
        resource_access={"account": {"roles": ["manage-account"]}},
        scope="openid email profile",
        name="Ada Lovelace",
        preferred_username="ada",
        email="ada@example.org",
    )
    worker = token(
        keycloak,
        "orders-api",
        sub="d952cf23-bf92-4c8f-a3ff-4972b4f2bc5b",
        azp="Orders-Worker",
        client_id="Orders-Worker",
        preferred_username="service-account-orders-worker",
        realm_access={"roles": ["orders-sync"]},
        scope="email profile",
    )
    async with validator:
        ada = await validator.validate(user)
        sync = await validator.validate(worker)
    assert ada.kind == "user" and sync.kind == "app"
    assert ada.roles == {"offline_access", "uma_authorization", "orders-admin"}
    assert ada.scopes == {"openid", "email", "profile"}
    assert (ada.name, ada.username, ada.email, ada.user_flow) == (
        "Ada Lovelace",
        "ada",
        "ada@example.org",
        None,
    )
    assert not ada.is_guest
    Requirement(roles=["orders-admin"], scopes=["profile"]).check(ada)
    Requirement(roles=["orders-sync"], kinds=["app"]).check(sync)


async def test_keycloak_client_roles(keycloak: LocalIssuer) -> None:
    validator = keycloak.validator("orders-api", roles_claim="resource_access.orders-api.roles")
    claims: dict[str, Any] = {
        "sub": "f2a1c3d4-0000-4000-8000-000000000001",
        "azp": "orders-web",
        "realm_access": {"roles": ["offline_access"]},
        "resource_access": {"orders-api": {"roles": ["orders.write"]}},
    }
    async with validator:
        ada = await validator.validate(token(keycloak, "orders-api", **claims))
    assert ada.roles == {"orders.write"}
    assert ada.scopes == set()  # scopes_claim unset: scp, else scope; this token has neither


async def test_require_roles_or_scopes_reads_the_mapped_claims(keycloak: LocalIssuer) -> None:
    validator = keycloak.validator(
        "orders-api", roles_claim="realm_access.roles", scopes_claim="scope"
    )
    # Entra-shaped roles in a token whose issuer keeps roles elsewhere grant nothing.
    entra_shaped = token(
        keycloak, "orders-api", sub="u", azp="w", roles=["orders-admin"], scp="read"
    )
    empty = token(keycloak, "orders-api", sub="u", azp="w", realm_access={"roles": []})
    async with validator:
        for refused in (entra_shaped, empty):
            with pytest.raises(InvalidToken) as info:
                await validator.validate(refused)
            assert info.value.reason == "no_permissions"
        only_roles = await validator.validate(
            token(keycloak, "orders-api", sub="u", azp="w", realm_access={"roles": ["r"]})
        )
    assert only_roles.roles == {"r"}


async def test_auth0_permissions() -> None:
    auth0 = LocalIssuer(issuer=AUTH0)
    api = "https://orders.example.com"
    validator = auth0.validator(api, roles_claim="permissions")
    machine = token(
        auth0,
        api,
        sub="AbC123xyz@clients",
        azp="AbC123xyz",
        gty="client-credentials",
        scope="read:orders",
        permissions=["read:orders"],
    )
    person = token(
        auth0,
        [api, "https://orders.eu.auth0.com/userinfo"],
        sub="auth0|6553da60a54af58e29493993",
        azp="WebApp456",
        scope="openid profile read:orders",
        permissions=["read:orders", "write:orders"],
    )
    # Auth0 namespaces custom claims with a URL: a tuple keeps the dots in the name.
    namespaced = LocalIssuer(issuer=AUTH0, base_url="https://other.test")
    roles_validator = namespaced.validator(api, roles_claim=("https://orders.example.com/roles",))
    custom: dict[str, Any] = {"https://orders.example.com/roles": ["Order Manager"]}
    with_roles = token(namespaced, api, sub="auth0|1", azp="WebApp456", scope="openid", **custom)
    async with validator, roles_validator:
        m2m = await validator.validate(machine)
        user = await validator.validate(person)
        manager = await roles_validator.validate(with_roles)
    assert (m2m.kind, user.kind) == ("app", "user")
    assert m2m.roles == {"read:orders"} and m2m.scopes == {"read:orders"}
    assert user.roles == {"read:orders", "write:orders"}
    assert m2m.app_id == "AbC123xyz"
    assert manager.roles == {"Order Manager"}
    Requirement(roles=["write:orders"], kinds=["user"]).check(user)


async def test_okta_scp_list_and_groups() -> None:
    okta = LocalIssuer(issuer=OKTA)
    validator = okta.validator("api://default", roles_claim="groups")
    person = token(
        okta,
        "api://default",
        ver=1,
        jti="AT.abc",
        cid="0oa1webapp",
        uid="00u1ada",
        scp=["openid", "orders.read"],
        sub="ada@example.org",
        groups=["Everyone", "Orders Admins"],
    )
    machine = token(
        okta, "api://default", ver=1, cid="0oa2worker", scp=["orders.sync"], sub="0oa2worker"
    )
    async with validator:
        ada = await validator.validate(person)
        worker = await validator.validate(machine)
    assert ada.kind == "user" and worker.kind == "app"
    assert ada.scopes == {"openid", "orders.read"}
    assert ada.roles == {"Everyone", "Orders Admins"}
    assert worker.scopes == {"orders.sync"} and worker.roles == set()
    Requirement(roles=["Orders Admins"], scopes=["orders.read"]).check(ada)


async def test_rfc9068_tokens() -> None:
    server = LocalIssuer(issuer=RFC9068, key_type="EC")
    validator = server.validator(
        "https://orders.example.com", token_types=["at+jwt"], scopes_claim="scope"
    )
    common = {"jti": "j1", "header_typ": "at+jwt"}
    client_only = token(
        server,
        "https://orders.example.com",
        sub="orders-worker",
        client_id="orders-worker",
        scope="orders.sync",
        **common,
    )
    with_user = token(
        server,
        "https://orders.example.com",
        sub="5ba552d67",
        client_id="s6BhdRkqt3",
        scope="openid orders.read",
        roles=["auditor"],
        auth_time=1,
        acr="urn:mace:incommon:iap:silver",
        **common,
    )
    async with validator:
        worker = await validator.validate(client_only)
        person = await validator.validate(with_user)
    assert (worker.kind, person.kind) == ("app", "user")
    assert worker.scopes == {"orders.sync"}
    assert person.scopes == {"openid", "orders.read"} and person.roles == {"auditor"}
    assert person.user_flow is None  # acr here is an assurance level, not a B2C flow


@pytest.mark.parametrize("value", ["", ".roles", "realm_access.", "a..b", (), ("a", ""), ["a", 3]])
def test_claim_paths_must_name_members(value: Any) -> None:
    with pytest.raises(ValueError, match="roles_claim must name non-empty claim members"):
        Issuer(issuer=KEYCLOAK, audiences=["a"], jwks_uri=f"{KEYCLOAK}/certs", roles_claim=value)


@pytest.mark.parametrize("value", [3, b"roles", {"roles"}])
def test_claim_paths_must_be_str_or_sequence(value: Any) -> None:
    with pytest.raises(TypeError, match="scopes_claim must be a dotted str or a sequence"):
        Issuer(issuer=KEYCLOAK, audiences=["a"], jwks_uri=f"{KEYCLOAK}/certs", scopes_claim=value)


def test_claim_paths_are_kept_as_given_and_hashable() -> None:
    base: dict[str, Any] = {"issuer": KEYCLOAK, "audiences": ["a"], "jwks_uri": f"{KEYCLOAK}/certs"}
    dotted = Issuer(**base, roles_claim="realm_access.roles")
    listed = Issuer(**base, roles_claim=["realm_access", "roles"])
    assert dotted.roles_claim == "realm_access.roles"
    assert listed.roles_claim == ("realm_access", "roles")
    assert dotted._roles_path == listed._roles_path == ("realm_access", "roles")
    assert hash(listed) == hash(Issuer(**base, roles_claim=("realm_access", "roles")))
    default = Issuer(**base)
    assert (default.roles_claim, default.scopes_claim) == (None, None)
    assert (default._roles_path, default._scopes_path) == (None, None)


async def test_mapped_claims_through_the_middleware_and_a_fastapi_guard(
    keycloak: LocalIssuer,
) -> None:
    # The integrations read roles and scopes from the Identity, never from "roles"/"scp":
    # a Keycloak token's realm roles open the guard's route and request.auth.scopes,
    # on first validation and on the middleware's cache hit path alike.
    validator = keycloak.validator(
        "orders-api", roles_claim="realm_access.roles", scopes_claim="scope"
    )
    guard = TokenGuard(validator)
    app = FastAPI()

    @app.get("/admin", dependencies=[Depends(guard.requires(roles=["orders-admin"]))])
    def admin() -> str:
        return "ok"

    @app.get("/profile", dependencies=[Depends(guard.requires(scopes=["profile"]))])
    def profile() -> str:
        return "ok"

    @app.get("/granted")
    def granted(request: Request) -> list[str]:
        return sorted(request.auth.scopes)

    app.add_middleware(TokenGuardMiddleware, validator=validator)
    ada = token(
        keycloak,
        "orders-api",
        sub="u-ada",
        azp="orders-web",
        realm_access={"roles": ["orders-admin"]},
        scope="openid profile",
    )
    reader = token(
        keycloak, "orders-api", sub="u-bob", azp="orders-web", realm_access={"roles": ["r"]}
    )
    entra_shaped = token(
        keycloak, "orders-api", sub="u", azp="w", roles=["orders-admin"], scp="profile"
    )
    transport = httpx.ASGITransport(app=app)
    async with validator, httpx.AsyncClient(transport=transport, base_url="http://t") as http:
        for _ in range(2):  # verified, then cache hits
            for path in ("/admin", "/profile"):
                assert (await http.get(path, headers=bearer(ada))).status_code == 200
                refused = await http.get(path, headers=bearer(reader))
                assert refused.status_code == 403, path
                assert 'error="insufficient_scope"' in refused.headers["www-authenticate"]
            scopes = await http.get("/granted", headers=bearer(ada))
            assert scopes.json() == ["openid", "orders-admin", "profile"]
            assert (await http.get("/granted", headers=bearer(reader))).json() == ["r"]
            unmapped = await http.get("/admin", headers=bearer(entra_shaped))
            assert unmapped.status_code == 401  # no_permissions: roles/scp mean nothing here
    assert validator.cache.hits >= 6
