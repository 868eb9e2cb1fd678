"""The Python recipes of README.md and the docs site run, and do what the pages say.

Every ```python block in README.md and in ``docs/*.md`` is preceded by
``<!-- test: NAME -->``; this module executes each block as written (placeholders such
as ``<tenant-id>`` replaced by stand-in values) and then checks its behaviour under
``CHECKS[NAME]``. A name is unique within a page; the README's quick starts appear again
in ``docs/quickstart.md`` under the same names and are checked in both places. Issuer
metadata the recipes would fetch from Entra or Keycloak is served by
:class:`LocalIssuer` stand-ins through an in-memory transport: nothing leaves the machine.

The reference pages are checked against the code: every option of ``Issuer``,
``TokenValidator``, ``TokenGuardMiddleware``, ``TokenGuard`` and ``Requirement`` has a row in
``docs/configuration.md`` (with the documented defaults), and every rejection reason
appears in the security page's table and has a row in ``docs/troubleshooting.md``.
"""

from __future__ import annotations

import dataclasses
import inspect
import re
import time
import types
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Final

import httpx
import pytest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.routing import Route
from starlette.testclient import TestClient

import tokenguard._validator
from tokenguard import (
    InvalidToken,
    Issuer,
    TokenGuardMiddleware,
    TokenValidator,
)
from tokenguard._authz import RequirementOptions
from tokenguard._errors import DESCRIPTIONS
from tokenguard.fastapi import TokenGuard
from tokenguard.testing import LocalIssuer

from .helpers import bearer

ROOT: Final = Path(__file__).resolve().parents[1]
README: Final = ROOT / "README.md"
DOCS: Final = ROOT / "docs"
CONFIGURATION: Final = DOCS / "configuration.md"
SECURITY_PAGE: Final = DOCS / "security.md"
TROUBLESHOOTING: Final = DOCS / "troubleshooting.md"
#: The pages whose ```python blocks are executed.
PAGES: Final = (README, *sorted(DOCS.glob("*.md")))
_MARKED: Final = re.compile(
    r"<!-- test: (?P<name>[\w-]+) -->\n```python\n(?P<code>.*?)^```", re.S | re.M
)
_PYTHON_FENCE: Final = re.compile(r"^```python$", re.M)
_PLACEHOLDER_IN_STRING: Final = re.compile(r"\"[^\"\n]*(<[a-z-]+>)[^\"\n]*\"")

TENANT: Final = "3f1c2b4a-0000-4000-8000-000000000001"
TENANT_A: Final = "3f1c2b4a-0000-4000-8000-00000000000a"
TENANT_B: Final = "3f1c2b4a-0000-4000-8000-00000000000b"
TENANT_C: Final = "3f1c2b4a-0000-4000-8000-00000000000c"
APP_ID: Final = "6e0b9a1d-0000-4000-8000-0000000000ab"
SUBSCRIPTION: Final = "0b1f6471-0000-4000-8000-000000000005"
PLACEHOLDERS: Final = {
    "<tenant-id>": TENANT,
    "<tenant-a>": TENANT_A,
    "<tenant-b>": TENANT_B,
    "<app-client-id>": APP_ID,
    "<subscription-id>": SUBSCRIPTION,
}
ENTRA: Final = "https://login.microsoftonline.com"
V1_DISCOVERY: Final = f"{ENTRA}/{TENANT}/.well-known/openid-configuration"
V2_DISCOVERY: Final = f"{ENTRA}/{TENANT}/v2.0/.well-known/openid-configuration"
MY_API: Final = "api://my-api"
#: A role for tokens that must pass: by default a token granting nothing is refused.
ROLE: Final = ["Secrets.Read"]

# Keys are the slow part of a LocalIssuer: one per shape, shared by the whole module.
_ISSUERS: dict[str, LocalIssuer] = {}


def stand_in(name: str, factory: Callable[[], LocalIssuer]) -> LocalIssuer:
    if name not in _ISSUERS:
        _ISSUERS[name] = factory()
    return _ISSUERS[name]


def v1_issuer() -> LocalIssuer:
    return stand_in("v1", lambda: LocalIssuer(tenant_id=TENANT))


def page_blocks(page: Path) -> dict[str, str]:
    """The marked ```python blocks of one page, by name."""
    text = page.read_text(encoding="utf-8")
    blocks: dict[str, str] = {}
    for match in _MARKED.finditer(text):
        name = match["name"]
        assert name not in blocks, f"two blocks of {page.name} are called {name}"
        blocks[name] = match["code"]
    return blocks


def marked_blocks() -> list[tuple[str, str]]:
    """(page, name) of every marked block, the page relative to the repository."""
    return [
        (page.relative_to(ROOT).as_posix(), name) for page in PAGES for name in page_blocks(page)
    ]


class StandIns:
    """Serves discovery documents and JWKS for the URLs the recipes name."""

    def __init__(self, page: str = "README.md") -> None:
        self.page = page
        self.discovery: dict[str, LocalIssuer] = {}
        self.jwks: dict[str, LocalIssuer] = {}
        self.requests: list[str] = []

    def add(self, discovery_url: str, issuer: LocalIssuer) -> LocalIssuer:
        self.discovery[discovery_url] = issuer
        self.jwks[f"https://keys.stand-in.test/{len(self.jwks)}"] = issuer
        return issuer

    def handler(self, request: httpx.Request) -> httpx.Response:
        url = str(request.url)
        self.requests.append(url)
        headers = {"cache-control": "max-age=3600"}
        if url in self.discovery:
            issuer = self.discovery[url]
            jwks_uri = next(u for u, i in self.jwks.items() if i is issuer)
            document = issuer.discovery_document() | {"jwks_uri": jwks_uri}
            return httpx.Response(200, json=document, headers=headers)
        if url in self.jwks:
            return httpx.Response(200, json=self.jwks[url].jwks(), headers=headers)
        return httpx.Response(404)

    def client(self, **options: Any) -> httpx.AsyncClient:
        return httpx.AsyncClient(transport=httpx.MockTransport(self.handler), **options)

    def run(self, name: str) -> dict[str, Any]:
        """Execute this test's page's block ``name``."""
        return run_block(self.page, name)


@pytest.fixture
def stand_ins(monkeypatch: pytest.MonkeyPatch) -> StandIns:
    """Validators the recipes build fetch through the stand-ins instead of the network."""
    found = StandIns()
    fake_httpx = types.SimpleNamespace(AsyncClient=found.client, Timeout=httpx.Timeout)
    monkeypatch.setattr(tokenguard._validator, "httpx", fake_httpx)
    return found


def multi_tenant_issuer(stand_ins: StandIns) -> LocalIssuer:
    """The issuer behind Entra's common endpoint, which the multi-tenant recipes read."""
    multi = stand_in(
        "multi", lambda: LocalIssuer(tenant_id="common", issuer=f"{ENTRA}/{{tenantid}}/v2.0")
    )
    return stand_ins.add(f"{ENTRA}/common/v2.0/.well-known/openid-configuration", multi)


def run_block(page: str, name: str) -> dict[str, Any]:
    """Execute the block ``name`` of ``page`` (relative to the repository) as a module."""
    code = page_blocks(ROOT / page)[name]
    for placeholder, value in PLACEHOLDERS.items():
        code = code.replace(placeholder, value)
    unreplaced = _PLACEHOLDER_IN_STRING.search(code)
    assert unreplaced is None, f"no stand-in value for {unreplaced[0]} in {page} block {name}"
    namespace: dict[str, Any] = {"__name__": f"readme_{name.replace('-', '_')}"}
    # dont_inherit: the block runs as a user's module would, without this file's
    # `from __future__ import annotations`.
    exec(compile(code, f"{page}[{name}]", "exec", dont_inherit=True), namespace)
    return namespace


async def close_all(namespace: dict[str, Any]) -> None:
    for value in namespace.values():
        if isinstance(value, TokenValidator):
            await value.aclose()


# -- the checks, one per block name ---------------------------------------------------


def check_quickstart_starlette(stand_ins: StandIns) -> None:
    issuer = stand_ins.add(V1_DISCOVERY, v1_issuer())
    ns = stand_ins.run("quickstart-starlette")
    with TestClient(ns["app"]) as client:
        token = issuer.mint(MY_API, object_id="oid-quick", roles=ROLE)
        assert client.get("/whoami", headers=bearer(token)).json() == {
            "kind": "managed_identity",
            "object_id": "oid-quick",
        }
        assert client.get("/whoami", headers=bearer(issuer.forge(MY_API))).status_code == 401
        assert client.get("/whoami").headers["www-authenticate"] == 'Bearer realm="tokenguard"'
    assert stand_ins.requests[0] == V1_DISCOVERY  # keys loaded at startup


def check_quickstart_fastapi(stand_ins: StandIns) -> None:
    issuer = stand_ins.add(V1_DISCOVERY, v1_issuer())
    ns = stand_ins.run("quickstart-fastapi")
    with TestClient(ns["app"]) as client:
        assert stand_ins.requests  # the guard's lifespan loaded the keys
        reader = issuer.mint(MY_API, roles=["Secrets.Read"], mi_resource_id="/x/vm-1")
        assert client.get("/secrets", headers=bearer(reader)).json() == {"caller": "vm-1"}
        other = issuer.mint(MY_API, roles=["Other"])  # valid, lacks the route's role
        assert client.get("/secrets", headers=bearer(other)).status_code == 403
        assert client.get("/secrets").status_code == 401
        schema = client.get("/openapi.json").json()
    assert schema["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    assert schema["paths"]["/secrets"]["get"]["security"] == [{"bearer": []}]


def check_single_tenant_mi(stand_ins: StandIns) -> None:
    issuer = stand_ins.add(V1_DISCOVERY, v1_issuer())
    ns = stand_ins.run("single-tenant-mi")
    reporter = ns["REPORTER"]
    assert SUBSCRIPTION in reporter
    api = "api://reports-api"
    with TestClient(ns["app"]) as client:
        ok = client.post("/reports", headers=bearer(issuer.mint(api, mi_resource_id=reporter)))
        assert ok.text == "stored for reporter"
        # Resource ids compare without case, as Azure does.
        upper = issuer.mint(api, mi_resource_id=reporter.upper())
        assert client.post("/reports", headers=bearer(upper)).status_code == 200
        other_vm = bearer(issuer.mint(api))
        assert client.post("/reports", headers=other_vm).status_code == 403
        user = bearer(issuer.mint(api, kind="user", mi_resource_id=reporter))
        assert client.post("/reports", headers=user).status_code == 403
        wrong_api = bearer(issuer.mint(MY_API, mi_resource_id=reporter))
        assert client.post("/reports", headers=wrong_api).status_code == 401
        assert client.get("/healthz").text == "ok"


def check_cors_mount(stand_ins: StandIns) -> None:
    issuer = stand_ins.add(V1_DISCOVERY, v1_issuer())
    ns = stand_ins.run("cors-mount")
    origin = {"Origin": "https://app.example"}
    preflight = {**origin, "Access-Control-Request-Method": "GET"}
    for root in ("", "/service"):  # also deployed under a server's --root-path
        with TestClient(ns["app"], root_path=root) as client:
            answer = client.options(f"{root}/api/data", headers=preflight)
            assert answer.status_code == 200  # no token needed for a preflight
            refused = client.get(f"{root}/api/data", headers=origin)
            assert refused.status_code == 401
            assert refused.headers["access-control-allow-origin"] == "https://app.example"
            token = issuer.mint(MY_API, roles=["Reader"], object_id="oid-c")
            ok = client.get(f"{root}/api/data", headers={**origin, **bearer(token)})
            assert ok.json() == {"object_id": "oid-c"}
            assert client.get(f"{root}/api/health").text == "ok"


async def check_multi_tenant(stand_ins: StandIns) -> None:
    issuer = multi_tenant_issuer(stand_ins)
    ns = stand_ins.run("multi-tenant")
    validator: TokenValidator = ns["validator"]
    for tenant in (TENANT_A, TENANT_B):
        token = issuer.mint(APP_ID, tenant_id=tenant, version="2.0", roles=ROLE)
        identity = await validator.validate(token)
        assert identity.tenant_id == tenant
        assert identity.issuer == f"{ENTRA}/{tenant}/v2.0"
    with pytest.raises(InvalidToken) as info:
        await validator.validate(issuer.mint(APP_ID, tenant_id=TENANT_C, version="2.0", roles=ROLE))
    assert info.value.reason == "wrong_tenant"
    await close_all(ns)


async def check_dynamic_tenants(stand_ins: StandIns) -> None:
    issuer = multi_tenant_issuer(stand_ins)
    ns = stand_ins.run("dynamic-tenants")
    validator: TokenValidator = ns["validator"]
    asked: list[str] = []
    decide = ns["is_onboarded"]

    async def counting(tenant_id: str) -> bool:
        asked.append(tenant_id)
        return bool(await decide(tenant_id))

    # The recipe's function, counted: the Issuer holds it, the validator its decisions.
    decisions = validator._states[0].tenant_decisions
    assert decisions is not None and validator.issuers[0].tenants is decide
    decisions._check = counting

    def mint(tenant: str) -> str:
        return issuer.mint(APP_ID, tenant_id=tenant, version="2.0", roles=ROLE)

    for _ in range(2):
        assert (await validator.validate(mint(TENANT_A))).tenant_id == TENANT_A
        with pytest.raises(InvalidToken) as info:
            await validator.validate(mint(TENANT_B))
        assert info.value.reason == "wrong_tenant"
        ns["ONBOARDED"].add(TENANT_B)  # onboarded now: the denial holds for its 60 s
    assert asked == [TENANT_A, TENANT_B]
    await close_all(ns)


async def check_b2c_policies(stand_ins: StandIns) -> None:
    b2c_issuer = f"https://contosob2c.b2clogin.com/{TENANT}/v2.0/"
    user_flows = stand_in("b2c-user-flows", lambda: LocalIssuer(issuer=b2c_issuer))
    custom = stand_in("b2c-custom", lambda: LocalIssuer(issuer=b2c_issuer))
    site = "https://contosob2c.b2clogin.com/contosob2c.onmicrosoft.com"
    policies = {"B2C_1_signupsignin": user_flows, "B2C_1A_signup_signin": custom}
    for policy in ("B2C_1_signupsignin", "B2C_1_passwordreset", "B2C_1A_signup_signin"):
        url = f"{site}/{policy}/v2.0/.well-known/openid-configuration"
        stand_ins.add(url, policies.get(policy, user_flows))
    ns = stand_ins.run("b2c-policies")
    validator: TokenValidator = ns["validator"]
    for policy, signer in policies.items():
        now = int(time.time())
        claims = {
            "iss": b2c_issuer,
            "aud": APP_ID,
            "exp": now + 3600,
            "nbf": now,
            "iat": now,
            "sub": "user-1",
            "tfp": policy,
            "scp": "orders.read",
            "ver": "1.0",
        }
        identity = await validator.validate(signer.sign(claims))
        assert (identity.kind, identity.tenant_id, identity.claims["tfp"]) == ("user", None, policy)
    stranger = stand_in("b2c-stranger", lambda: LocalIssuer(issuer=b2c_issuer))
    with pytest.raises(InvalidToken) as info:
        await validator.validate(stranger.sign(claims))
    assert info.value.reason == "unknown_key"
    await close_all(ns)


async def check_v1_and_v2(stand_ins: StandIns) -> None:
    v1 = stand_ins.add(V1_DISCOVERY, v1_issuer())
    v2 = stand_ins.add(
        V2_DISCOVERY,
        stand_in("v2", lambda: LocalIssuer(tenant_id=TENANT, issuer=f"{ENTRA}/{TENANT}/v2.0")),
    )
    ns = stand_ins.run("v1-and-v2")
    validator: TokenValidator = ns["validator"]
    old = await validator.validate(v1.mint(MY_API, app_id="caller-v1", roles=ROLE))
    new = await validator.validate(v2.mint(APP_ID, app_id="caller-v2", version="2.0", roles=ROLE))
    assert (old.app_id, old.audience) == ("caller-v1", MY_API)
    assert (new.app_id, new.audience) == ("caller-v2", APP_ID)
    # Each issuer has its own audiences and its own keys.
    with pytest.raises(InvalidToken) as info:
        await validator.validate(v2.mint(MY_API, version="2.0", roles=ROLE))
    assert info.value.reason == "wrong_audience"
    v2_claims_v1_key = v1.sign(v2.claims(APP_ID, version="2.0", roles=ROLE))
    with pytest.raises(InvalidToken) as info:
        await validator.validate(v2_claims_v1_key)
    assert info.value.reason == "unknown_key"
    await close_all(ns)


async def check_generic_oidc(stand_ins: StandIns) -> None:
    realm = "https://keycloak.example.com/realms/orders"
    issuer = stand_ins.add(
        f"{realm}/.well-known/openid-configuration",
        stand_in("keycloak", lambda: LocalIssuer(issuer=realm, key_type="EC")),
    )
    ns = stand_ins.run("generic-oidc")
    validator: TokenValidator = ns["validator"]
    at_jwt = issuer.mint("orders-api", kind="user", headers={"typ": "at+jwt"})
    identity = await validator.validate(at_jwt)
    assert identity.issuer == realm
    assert issuer.signing_key.alg == "ES256"
    with pytest.raises(InvalidToken) as info:
        await validator.validate(issuer.mint("orders-api", kind="user"))  # typ: JWT
    assert info.value.reason == "wrong_type"
    await close_all(ns)


async def check_lab_validator(stand_ins: StandIns, monkeypatch: pytest.MonkeyPatch) -> None:
    lab_discovery = f"http://127.0.0.1:8700/{TENANT}/.well-known/openid-configuration"
    issuer = stand_ins.add(lab_discovery, v1_issuer())
    monkeypatch.setenv("LAB_ISSUER", issuer.issuer)
    monkeypatch.setenv("LAB_DISCOVERY_URL", lab_discovery)
    ns = stand_ins.run("lab-validator")
    api = "api://tokenguard-lab-api"
    identity = await ns["validator"].validate(issuer.mint(api, roles=["Secrets.Read"]))
    assert identity.kind == "managed_identity"
    with pytest.raises(InvalidToken):  # no app role at all
        await ns["validator"].validate(issuer.mint(api))
    await close_all(ns)


def check_testing(stand_ins: StandIns) -> None:
    ns = stand_ins.run("testing")
    tests = [v for k, v in ns.items() if k.startswith("test_") and callable(v)]
    assert len(tests) == 1
    tests[0]()
    assert stand_ins.requests == []  # LocalIssuer's own transport, not the stand-ins


def check_readiness(stand_ins: StandIns) -> None:
    stand_ins.add(V1_DISCOVERY, v1_issuer())
    ns = stand_ins.run("readiness")
    with TestClient(ns["app"]) as client:
        response = client.get("/readyz")
    assert response.status_code == 200
    assert response.json()["issuers"][0]["issuer"] == f"https://sts.windows.net/{TENANT}/"


def check_metrics(stand_ins: StandIns) -> None:
    issuer = stand_ins.add(V1_DISCOVERY, v1_issuer())
    ns = stand_ins.run("metrics")
    with TestClient(ns["app"]) as client:
        valid = issuer.mint(MY_API, roles=ROLE)
        assert client.get("/", headers=bearer(valid)).status_code == 404  # no route
        assert client.get("/", headers=bearer(issuer.forge(MY_API))).status_code == 401
        text = client.get("/metrics").text
    assert 'tokenguard_validations_total{outcome="valid",reason=""} 1.0' in text
    assert 'tokenguard_validations_total{outcome="invalid",reason="bad_signature"} 1.0' in text
    assert f'tokenguard_keyset_usable{{issuer="https://sts.windows.net/{TENANT}/"}} 1.0' in text


def check_no_guests(stand_ins: StandIns) -> None:
    ns = stand_ins.run("no-guests")
    issuer = v1_issuer()
    validator = issuer.validator(MY_API)
    app = Starlette(
        routes=[Route("/report", ns["report"]), Route("/summary", ns["summary"])],
        middleware=[Middleware(TokenGuardMiddleware, validator=validator)],
    )
    home = "https://sts.windows.net/0b1f6471-1bf0-4dda-aec3-cb9272f09590/"
    guest = issuer.mint(MY_API, kind="user", roles=["Reports.Read"], claims={"idp": home})
    member = issuer.mint(MY_API, kind="user", roles=["Reports.Read"])
    with TestClient(app) as client:
        for path in ("/report", "/summary"):
            refused = client.get(path, headers=bearer(guest))
            assert refused.status_code == 403
            assert refused.json()["error_description"] == "Guest users are not allowed"
            assert client.get(path, headers=bearer(member)).status_code == 200


#: The servers of the claim-layouts recipe, by name: their issuer URL, the audience
#: the recipe configures, and a token's claims in that server's layout.
LAYOUTS: Final[dict[str, tuple[str, str, dict[str, Any]]]] = {
    "keycloak": (
        "https://keycloak.example.com/realms/orders",
        "orders-api",
        {
            "sub": "f2a1",
            "azp": "orders-web",
            "scope": "openid profile",
            "realm_access": {"roles": ["offline_access"]},
            "resource_access": {"orders-api": {"roles": ["orders.write"]}},
        },
    ),
    "auth0": (
        "https://orders.eu.auth0.com/",
        "https://orders.example.com",
        {
            "sub": "AbC@clients",
            "azp": "AbC",
            "scope": "read:orders",
            "permissions": ["read:orders"],
        },
    ),
    "okta": (
        "https://orders.okta.com/oauth2/default",
        "api://default",
        {
            "sub": "ada@example.org",
            "cid": "0oa1",
            "scp": ["orders.read"],
            "groups": ["Orders Admins"],
        },
    ),
}


def layout_token(issuer: LocalIssuer, audience: str, claims: dict[str, Any]) -> str:
    """A token of ``issuer`` for ``audience``, valid for a minute, carrying ``claims``."""
    now = int(time.time())
    return issuer.sign(
        {"iss": issuer.issuer, "aud": audience, "iat": now, "exp": now + 60, **claims}
    )


async def check_claim_layouts(stand_ins: StandIns) -> None:
    issuers = {
        name: stand_ins.add(
            iss.rstrip("/") + "/.well-known/openid-configuration",
            stand_in(f"layout-{name}", lambda iss=iss: LocalIssuer(issuer=iss)),  # type: ignore[misc]
        )
        for name, (iss, _, _) in LAYOUTS.items()
    }
    ns = stand_ins.run("claim-layouts")
    validator: TokenValidator = ns["validator"]
    seen = {
        name: await validator.validate(layout_token(issuers[name], audience, claims))
        for name, (_, audience, claims) in LAYOUTS.items()
    }
    assert seen["keycloak"].roles == {"orders.write"}
    assert seen["keycloak"].scopes == {"openid", "profile"}
    assert seen["auth0"].kind == "app" and seen["auth0"].roles == {"read:orders"}
    assert seen["okta"].kind == "user" and seen["okta"].roles == {"Orders Admins"}
    assert seen["okta"].scopes == {"orders.read"}
    entra_layout = {"sub": "f2a1", "roles": ["orders.write"]}  # in a Keycloak token
    with pytest.raises(InvalidToken) as info:
        await validator.validate(layout_token(issuers["keycloak"], "orders-api", entra_layout))
    assert info.value.reason == "no_permissions"
    await close_all(ns)


def check_swagger_signin(stand_ins: StandIns) -> None:
    issuer = stand_ins.add(V1_DISCOVERY, v1_issuer())
    ns = stand_ins.run("swagger-signin")
    with TestClient(ns["app"]) as client:
        user = issuer.mint(MY_API, kind="user", scopes=["Secrets.Read"])
        assert client.get("/secrets", headers=bearer(user)).status_code == 200
        other = issuer.mint(MY_API, kind="user", scopes=["Other"])
        assert client.get("/secrets", headers=bearer(other)).status_code == 403
        schema = client.get("/openapi.json").json()
        page = client.get("/docs").text
    flow = schema["components"]["securitySchemes"]["oauth2"]["flows"]["authorizationCode"]
    assert flow["authorizationUrl"] == f"{ENTRA}/{TENANT}/oauth2/v2.0/authorize"
    assert flow["tokenUrl"] == f"{ENTRA}/{TENANT}/oauth2/v2.0/token"
    assert flow["scopes"] == {"api://my-api/Secrets.Read": "Read the secrets"}
    assert schema["paths"]["/secrets"]["get"]["security"] == [
        {"oauth2": ["api://my-api/Secrets.Read"]}
    ]
    assert '"usePkceWithAuthorizationCodeGrant": true' in page and APP_ID in page


CHECKS: Final[dict[str, Callable[..., Any]]] = {
    "quickstart-starlette": check_quickstart_starlette,
    "quickstart-fastapi": check_quickstart_fastapi,
    "single-tenant-mi": check_single_tenant_mi,
    "multi-tenant": check_multi_tenant,
    "dynamic-tenants": check_dynamic_tenants,
    "b2c-policies": check_b2c_policies,
    "cors-mount": check_cors_mount,
    "v1-and-v2": check_v1_and_v2,
    "generic-oidc": check_generic_oidc,
    "lab-validator": check_lab_validator,
    "testing": check_testing,
    "readiness": check_readiness,
    "metrics": check_metrics,
    "no-guests": check_no_guests,
    "claim-layouts": check_claim_layouts,
    "swagger-signin": check_swagger_signin,
}


def test_every_python_block_is_marked_and_checked() -> None:
    for page in PAGES:
        fences = len(_PYTHON_FENCE.findall(page.read_text(encoding="utf-8")))
        assert fences == len(page_blocks(page)), f"a ```python block of {page.name} lacks a marker"
    assert {name for _, name in marked_blocks()} == set(CHECKS)


def test_readme_quick_starts_are_tested() -> None:
    assert {"quickstart-starlette", "quickstart-fastapi"} <= set(page_blocks(README))


BLOCKS: Final = marked_blocks()
SYNC_BLOCKS: Final = [b for b in BLOCKS if not inspect.iscoroutinefunction(CHECKS[b[1]])]
ASYNC_BLOCKS: Final = [b for b in BLOCKS if inspect.iscoroutinefunction(CHECKS[b[1]])]


@pytest.mark.parametrize(("page", "name"), SYNC_BLOCKS)
def test_recipe(page: str, name: str, stand_ins: StandIns) -> None:
    stand_ins.page = page
    CHECKS[name](stand_ins)


@pytest.mark.anyio
@pytest.mark.parametrize(("page", "name"), ASYNC_BLOCKS)
async def test_async_recipe(
    page: str, name: str, stand_ins: StandIns, monkeypatch: pytest.MonkeyPatch
) -> None:
    stand_ins.page = page
    check = CHECKS[name]
    if "monkeypatch" in inspect.signature(check).parameters:
        await check(stand_ins, monkeypatch)
    else:
        await check(stand_ins)


# -- the reference pages follow the code ----------------------------------------------


def documented_options() -> Iterator[tuple[str, str]]:
    for field in dataclasses.fields(Issuer):
        if field.init:
            yield "Issuer", field.name
    for cls in (TokenValidator, TokenGuardMiddleware, TokenGuard):
        for name in list(inspect.signature(cls.__init__).parameters)[1:]:
            if name != "app":
                yield cls.__name__, name
    for name in RequirementOptions.__annotations__:
        yield "Requirement", name


@pytest.mark.parametrize(("owner", "option"), list(documented_options()))
def test_configuration_reference_has_every_option(owner: str, option: str) -> None:
    assert f"| `{option}` |" in CONFIGURATION.read_text(encoding="utf-8"), f"{owner}.{option}"


def test_security_table_names_every_reason() -> None:
    text = SECURITY_PAGE.read_text(encoding="utf-8")
    # The fallback reason of a bare InvalidRequest(); nothing in tokenguard raises it.
    unused = {"bad_header"}
    missing = [r for r in DESCRIPTIONS if r not in unused and f"`{r}`" not in text]
    assert missing == []


def test_troubleshooting_has_a_row_for_every_reason() -> None:
    rows = re.findall(r"^\| `([a-z_]+)` \|", TROUBLESHOOTING.read_text(encoding="utf-8"), re.M)
    assert sorted(rows) == sorted(DESCRIPTIONS), "one row per reason, in the first column"


def test_documented_defaults_match_the_code() -> None:
    text = CONFIGURATION.read_text(encoding="utf-8")
    defaults = {f.name: f.default for f in dataclasses.fields(Issuer) if f.init}
    for name, value in defaults.items():
        if value is dataclasses.MISSING:
            continue
        shown = repr(value).replace("'", '"')
        assert f"| `{name}` | `{shown}` |" in text, (name, shown)
    parameters = inspect.signature(TokenValidator.__init__).parameters
    for name in ("cache_size", "max_token_bytes", "reject_id_tokens"):
        assert f"| `{name}` | `{parameters[name].default}` |" in text, name


@pytest.mark.parametrize("name", ["quickstart-starlette", "quickstart-fastapi"])
def test_readme_quick_start_passes_mypy_strict(name: str, tmp_path: Path) -> None:
    # The first code a newcomer copies must type-check under the settings this project
    # itself uses (an Optional identity, or an untyped endpoint, would not).
    from mypy import api

    module = tmp_path / f"{name.replace('-', '_')}.py"
    module.write_text(page_blocks(README)[name], encoding="utf-8")
    out, err, status = api.run(
        ["--strict", "--no-incremental", "--python-version", "3.11", str(module)]
    )
    assert status == 0, out + err
