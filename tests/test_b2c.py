"""Azure AD B2C: several policies (user flows) of one tenant on one API.

What B2C serves (Microsoft's "Overview of tokens in Azure Active Directory B2C" and the
user-flow metadata endpoints):

- each policy has its own discovery document,
  ``https://{tenant}.b2clogin.com/{tenant}.onmicrosoft.com/{policy}/v2.0/.well-known/openid-configuration``,
  pointing at its own key set, ``.../{policy}/discovery/v2.0/keys``;
- every policy's tokens carry the same ``iss``, ``https://{tenant}.b2clogin.com/{tenant-id}/v2.0/``
  (the default "issuer claim" setting; the ``tfp`` form puts the policy in ``iss`` and
  needs nothing new: one Issuer per policy), and no ``tid``;
- user flows sign with the tenant's key; a custom policy signs with the key container
  its JWT issuer technical profile names, so its key set can differ;
- access tokens: ``ver`` "1.0", ``aud`` the API's client id, ``sub`` (the user's object
  id by default), ``oid`` when configured, ``tfp`` (or ``acr`` in older tenants) the
  policy, ``scp``, ``azp`` the client app, ``iat``/``auth_time``; no ``nonce`` (ID
  tokens carry it when the app sent one).

So one :class:`Issuer` with ``discovery_urls`` (one per policy) models it: one issuer
string, several key sources, their keys merged.
"""

from __future__ import annotations

import time
import uuid
from collections import Counter
from typing import Any

import anyio
import httpx
import pytest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from tokenguard import (
    InvalidToken,
    Issuer,
    KeysUnavailable,
    TokenGuardMiddleware,
    TokenValidator,
    require_identity,
)
from tokenguard.testing import LocalIssuer

from .helpers import FakeClock, RecordingObserver, bearer

TENANT = "contosob2c"
TENANT_ID = "775527ff-9a37-4307-8b3d-cc311f58d925"
HOST = f"https://{TENANT}.b2clogin.com"
ISSUER = f"{HOST}/{TENANT_ID}/v2.0/"
API_CLIENT_ID = "90c0fe63-bcf2-44d5-8fb7-b8bbc0b29dc6"
SPA_CLIENT_ID = "2e6b4c1a-0000-4000-8000-0000000000c1"
SIGN_IN = "B2C_1_signupsignin"
RESET = "B2C_1_passwordreset"
CUSTOM = "B2C_1A_signup_signin"
POLICIES = (SIGN_IN, RESET, CUSTOM)


def discovery_url(policy: str) -> str:
    return f"{HOST}/{TENANT}.onmicrosoft.com/{policy}/v2.0/.well-known/openid-configuration"


class B2CTenant:
    """A B2C tenant's metadata endpoints: user flows share one key, the custom policy
    signs with its own; every policy advertises the same issuer."""

    def __init__(self, user_flows: LocalIssuer, custom: LocalIssuer) -> None:
        self.user_flows = user_flows
        self.custom = custom
        self.hits: Counter[str] = Counter()
        #: Policies whose discovery document names another issuer (a misconfiguration).
        self.wrong_issuer: set[str] = set()

    def signer(self, policy: str) -> LocalIssuer:
        return self.custom if policy.upper().startswith("B2C_1A_") else self.user_flows

    def discovery_document(self, policy: str) -> dict[str, Any]:
        base = f"{HOST}/{TENANT}.onmicrosoft.com/{policy.lower()}"
        return {
            "issuer": "https://elsewhere.test/" if policy in self.wrong_issuer else ISSUER,
            "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
            "token_endpoint": f"{base}/oauth2/v2.0/token",
            "end_session_endpoint": f"{base}/oauth2/v2.0/logout",
            "jwks_uri": f"{base}/discovery/v2.0/keys",
            "response_modes_supported": ["query", "fragment", "form_post"],
            "response_types_supported": ["code", "code id_token", "code token", "id_token"],
            "scopes_supported": ["openid"],
            "subject_types_supported": ["pairwise"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "token_endpoint_auth_methods_supported": ["client_secret_post", "client_secret_basic"],
            "claims_supported": ["name", "emails", "sub", "oid", "tfp", "iss", "iat", "exp"],
        }

    def handler(self, request: httpx.Request) -> httpx.Response:
        parts = request.url.path.strip("/").split("/")
        # /{tenant}.onmicrosoft.com/{policy}/v2.0/.well-known/openid-configuration
        # /{tenant}.onmicrosoft.com/{policy}/discovery/v2.0/keys
        if request.url.host == f"{TENANT}.b2clogin.com" and len(parts) >= 4:
            policy = next((p for p in POLICIES if p.lower() == parts[1].lower()), None)
            if policy is not None and parts[2:] == ["v2.0", ".well-known", "openid-configuration"]:
                self.hits[f"{policy}/discovery"] += 1
                return httpx.Response(200, json=self.discovery_document(policy))
            if policy is not None and parts[2:] == ["discovery", "v2.0", "keys"]:
                self.hits[f"{policy}/keys"] += 1
                return httpx.Response(200, json=self.signer(policy).jwks())
        return httpx.Response(404, json={"error": "not_found"})

    def client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(transport=httpx.MockTransport(self.handler))

    def access_token(self, policy: str, *, flow_claim: str = "tfp", **extra: Any) -> str:
        """An access token as B2C issues it for ``policy`` (claims per Microsoft's
        token reference; ``flow_claim="acr"`` for tenants on the older setting)."""
        now = int(time.time())
        user = str(uuid.uuid4())
        claims: dict[str, Any] = {
            "iss": ISSUER,
            "exp": now + 3600,
            "nbf": now,
            "aud": API_CLIENT_ID,
            "oid": user,
            "sub": user,
            "name": "Ada Customer",
            "emails": ["ada@example.test"],
            flow_claim: policy,
            "scp": "orders.read",
            "azp": SPA_CLIENT_ID,
            "ver": "1.0",
            "iat": now,
            "auth_time": now,
        }
        claims.update(extra)
        claims = {k: v for k, v in claims.items() if v is not None}
        return self.signer(policy).sign(claims)


@pytest.fixture(scope="module")
def keys() -> tuple[LocalIssuer, LocalIssuer]:
    """The two signing keys (generation is the slow part): shared by the module."""
    return LocalIssuer(issuer=ISSUER), LocalIssuer(issuer=ISSUER)


@pytest.fixture
def b2c(keys: tuple[LocalIssuer, LocalIssuer]) -> B2CTenant:
    return B2CTenant(*keys)


def b2c_issuer(*policies: str, **options: Any) -> Issuer:
    return Issuer(
        issuer=ISSUER,
        audiences=[API_CLIENT_ID],
        discovery_urls=[discovery_url(p) for p in policies],
        **options,
    )


# -- configuration ------------------------------------------------------------------


def test_one_issuer_with_several_discovery_documents() -> None:
    issuer = b2c_issuer(*POLICIES)
    assert issuer.discovery_urls == tuple(discovery_url(p) for p in POLICIES)
    assert issuer.discovery_url is None
    assert issuer.key_source == discovery_url(SIGN_IN)


@pytest.mark.parametrize(
    ("options", "error", "match"),
    [
        ({"discovery_url": discovery_url(SIGN_IN)}, ValueError, "exactly one"),
        ({"jwks_uri": f"{HOST}/keys"}, ValueError, "exactly one"),
    ],
)
def test_discovery_urls_exclude_the_other_key_sources(
    options: dict[str, Any], error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        b2c_issuer(SIGN_IN, **options)


def test_discovery_urls_are_checked() -> None:
    with pytest.raises(ValueError, match="twice"):
        b2c_issuer(SIGN_IN, SIGN_IN)
    with pytest.raises(TypeError, match="collection"):
        Issuer(issuer=ISSUER, audiences=[API_CLIENT_ID], discovery_urls=discovery_url(SIGN_IN))
    with pytest.raises(ValueError, match="https"):
        Issuer(issuer=ISSUER, audiences=[API_CLIENT_ID], discovery_urls=["http://b2c.test/x"])
    # validate_cloud_instance reads the discovery documents: allowed with several.
    assert b2c_issuer(SIGN_IN, validate_cloud_instance=True).validate_cloud_instance


def test_two_issuers_with_one_issuer_string_point_to_discovery_urls() -> None:
    one = Issuer(issuer=ISSUER, audiences=[API_CLIENT_ID], discovery_url=discovery_url(SIGN_IN))
    other = Issuer(issuer=ISSUER, audiences=[API_CLIENT_ID], discovery_url=discovery_url(RESET))
    with pytest.raises(ValueError, match="discovery_urls"):
        TokenValidator([one, other])


# -- validation -----------------------------------------------------------------------


@pytest.mark.anyio
async def test_tokens_of_every_policy_verify(b2c: B2CTenant) -> None:
    async with TokenValidator([b2c_issuer(*POLICIES)], http_client=b2c.client()) as validator:
        for policy in POLICIES:
            token = b2c.access_token(policy)
            identity = await validator.validate(token)
            assert identity.kind == "user"
            assert identity.issuer == ISSUER
            assert identity.audience == API_CLIENT_ID
            assert identity.tenant_id is None  # B2C sends no tid: the tenant is in iss
            assert identity.scopes == {"orders.read"}
            assert identity.app_id == SPA_CLIENT_ID
            assert identity.claims["tfp"] == policy
    # Each policy's documents were read once, on the first token that needed them.
    assert b2c.hits == {f"{p}/{d}": 1 for p in POLICIES for d in ("discovery", "keys")}


@pytest.mark.anyio
async def test_warm_up_loads_every_policy(b2c: B2CTenant) -> None:
    async with TokenValidator([b2c_issuer(*POLICIES)], http_client=b2c.client()) as validator:
        await validator.warm_up()
        (status,) = validator.status()
        assert status.usable and status.loaded and status.issuer == ISSUER
        assert set(status.kids) == {b2c.user_flows.signing_kid, b2c.custom.signing_kid}
        assert status.key_count == 2  # the user flows' shared key counted once
        assert validator.is_ready()
        await validator.validate(b2c.access_token(CUSTOM))
    assert sum(b2c.hits.values()) == 2 * len(POLICIES)


@pytest.mark.anyio
async def test_a_policy_left_out_is_not_trusted(b2c: B2CTenant) -> None:
    async with TokenValidator([b2c_issuer(SIGN_IN, RESET)], http_client=b2c.client()) as validator:
        await validator.validate(b2c.access_token(RESET))
        with pytest.raises(InvalidToken) as caught:
            await validator.validate(b2c.access_token(CUSTOM))  # signed by a key not trusted
        assert caught.value.reason == "unknown_key"


@pytest.mark.anyio
async def test_older_tenants_name_the_policy_in_acr(b2c: B2CTenant) -> None:
    async with TokenValidator([b2c_issuer(SIGN_IN)], http_client=b2c.client()) as validator:
        identity = await validator.validate(b2c.access_token(SIGN_IN, flow_claim="acr"))
        assert identity.claims["acr"] == SIGN_IN


@pytest.mark.anyio
async def test_b2c_user_flow_on_the_identity(b2c: B2CTenant) -> None:
    """``Identity.user_flow``: ``tfp``, else a B2C ``acr`` (older tenants)."""
    async with TokenValidator([b2c_issuer(*POLICIES)], http_client=b2c.client()) as validator:
        custom = await validator.validate(b2c.access_token(CUSTOM))
        assert custom.user_flow == CUSTOM
        older = await validator.validate(b2c.access_token(SIGN_IN, flow_claim="acr"))
        assert older.user_flow == SIGN_IN
        assert older.to_dict()["user_flow"] == SIGN_IN


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("claims", "reason"),
    [
        ({"nonce": "n-0S6_WzA2Mj", "scp": None}, "wrong_type"),  # an ID token
        ({"aud": SPA_CLIENT_ID}, "wrong_audience"),  # meant for the client app
        ({"scp": None}, "no_permissions"),
        ({"iss": f"{HOST}/tfp/{TENANT_ID}/{SIGN_IN.lower()}/v2.0/"}, "wrong_issuer"),
        ({"iss": f"{HOST}/{uuid.UUID(int=1)}/v2.0/"}, "wrong_issuer"),  # another tenant
    ],
)
async def test_what_b2c_tokens_are_refused_for(
    b2c: B2CTenant, claims: dict[str, Any], reason: str
) -> None:
    async with TokenValidator([b2c_issuer(*POLICIES)], http_client=b2c.client()) as validator:
        with pytest.raises(InvalidToken) as caught:
            await validator.validate(b2c.access_token(SIGN_IN, **claims))
        assert caught.value.reason == reason


@pytest.mark.anyio
async def test_a_broken_policy_does_not_take_the_others_down(b2c: B2CTenant) -> None:
    b2c.wrong_issuer.add(CUSTOM)
    async with TokenValidator([b2c_issuer(*POLICIES)], http_client=b2c.client()) as validator:
        with pytest.raises(KeysUnavailable):
            await validator.warm_up()
        (status,) = validator.status()
        assert not status.usable  # readiness says so
        assert status.last_error is not None and "elsewhere" in status.last_error
        await validator.validate(b2c.access_token(SIGN_IN))
        await validator.validate(b2c.access_token(RESET))
        # The custom policy's key could be in the set that failed: 503, not 401.
        with pytest.raises(KeysUnavailable):
            await validator.validate(b2c.access_token(CUSTOM))


@pytest.mark.anyio
async def test_unknown_kids_refresh_each_policy_once_per_cooldown(b2c: B2CTenant) -> None:
    async with TokenValidator([b2c_issuer(*POLICIES)], http_client=b2c.client()) as validator:
        await validator.warm_up()
        before = sum(b2c.hits.values())
        for n in range(5):
            forged = b2c.user_flows.sign(
                {"iss": ISSUER, "aud": API_CLIENT_ID, "exp": int(time.time()) + 60},
                headers={"kid": f"unknown-{n}"},
            )
            with pytest.raises(InvalidToken) as caught:
                await validator.validate(forged)
            assert caught.value.reason == "unknown_key"
        # One JWKS refresh per policy (the documents are fresh), then the cooldown holds.
        assert sum(b2c.hits.values()) - before == len(POLICIES)


async def orders(request: Request) -> JSONResponse:
    identity = require_identity(request)
    return JSONResponse({"user": identity.object_id, "flow": identity.claims["tfp"]})


def test_through_the_middleware(b2c: B2CTenant) -> None:
    validator = TokenValidator([b2c_issuer(*POLICIES)], http_client=b2c.client())
    app = Starlette(
        routes=[Route("/orders", orders)],
        middleware=[Middleware(TokenGuardMiddleware, validator=validator)],
    )
    with TestClient(app) as client:
        for policy in POLICIES:
            answer = client.get("/orders", headers=bearer(b2c.access_token(policy)))
            assert answer.status_code == 200
            assert answer.json()["flow"] == policy
        assert client.get("/orders").status_code == 401


@pytest.mark.parametrize("anyio_backend", ["asyncio", "trio"])
@pytest.mark.anyio
async def test_a_policy_rotating_its_key_stops_only_its_cached_tokens_without_traffic() -> None:
    # The custom policy's key container rolls over while the service is idle: the
    # background refresh of that policy's key set drops the old key and the tokens it
    # verified; the user flows' cached tokens keep being served.
    clock = FakeClock(time.time())
    b2c = B2CTenant(LocalIssuer(issuer=ISSUER), LocalIssuer(issuer=ISSUER))
    observer = RecordingObserver()
    validator = TokenValidator(
        [b2c_issuer(*POLICIES)],
        http_client=b2c.client(),
        observer=observer,
        jitter=lambda: 0.5,
        **clock.validator_clocks(),
    )
    app = Starlette(
        routes=[Route("/orders", orders)],
        middleware=[Middleware(TokenGuardMiddleware, validator=validator)],
    )
    day = int(clock.now) + 86_400
    user_flow, custom = b2c.access_token(SIGN_IN, exp=day), b2c.access_token(CUSTOM, exp=day)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://app") as http:
        await validator.warm_up()
        for _ in range(2):
            for token in (user_flow, custom):
                assert (await http.get("/orders", headers=bearer(token))).status_code == 200
        old_kid = b2c.custom.signing_kid
        b2c.custom.rotate("RSA")
        b2c.custom.retire(old_kid)
        assert (await http.get("/orders", headers=bearer(custom))).status_code == 200  # cached
        fetched = b2c.hits[f"{CUSTOM}/keys"]
        for _ in range(48):  # at most 8 idle hours, 10 minutes at a time
            clock.advance(600)
            await anyio.wait_all_tasks_blocked()  # whatever the timers started is done
            if b2c.hits[f"{CUSTOM}/keys"] > fetched:
                break
        assert b2c.hits[f"{CUSTOM}/keys"] == fetched + 1  # the timer did it, once
        assert validator.cached(custom) is None
        assert validator.cached(user_flow) is not None  # its key set dropped nothing
        refused = await http.get("/orders", headers=bearer(custom))
        assert refused.status_code == 401
        assert "signing key is unknown" in refused.headers["www-authenticate"]
        assert (await http.get("/orders", headers=bearer(user_flow))).status_code == 200
        fresh = b2c.access_token(CUSTOM, exp=day)
        assert (await http.get("/orders", headers=bearer(fresh))).json()["flow"] == CUSTOM
    await validator.aclose()
    # Verified once each, hits until the rotation (validator.cached's hit counts too);
    # then the custom token verified again (refused), the user flow's still a hit, the
    # new custom token verified.
    outcomes = [(outcome, cached) for outcome, _, _, cached in observer.validations]
    assert outcomes == [("valid", False)] * 2 + [("valid", True)] * 4 + [
        ("invalid", False),
        ("valid", True),
        ("valid", False),
    ]
