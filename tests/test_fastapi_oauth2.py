"""tokenguard.fastapi with ``oauth2=``: the guard as an OAuth2 authorization-code scheme."""

from collections.abc import Awaitable, Callable
from typing import Annotated, Any

import httpx
import pytest
from fastapi import FastAPI, Security
from starlette.testclient import TestClient

from tokenguard import Identity
from tokenguard.fastapi import OAuth2AuthorizationCode, TokenGuard, add_openapi_responses
from tokenguard.testing import LocalIssuer

from .helpers import bearer

API = "api://my-api"
AUTHORIZE = "https://login.microsoftonline.com/t/oauth2/v2.0/authorize"
TOKEN = "https://login.microsoftonline.com/t/oauth2/v2.0/token"
FLOW = OAuth2AuthorizationCode(
    authorization_url=AUTHORIZE,
    token_url=TOKEN,
    scopes={"Secrets.Read": "Read secrets", "Secrets.Write": "Write secrets"},
    scope_prefix=API + "/",
)

#: Module level: FastAPI resolves these aliases in module globals.
SIGNIN = TokenGuard(oauth2=FLOW)
BEARER = TokenGuard()
User = Annotated[Identity, Security(SIGNIN.identity)]
Reader = Annotated[Identity, Security(SIGNIN.requires(scopes=["Secrets.Read"]))]
ReadOrRole = Annotated[Identity, Security(SIGNIN.requires(permissions=["Secrets.Read", "Admin"]))]
Writer = Annotated[Identity, Security(SIGNIN.identity, scopes=["Secrets.Write"])]
Plain = Annotated[Identity, Security(BEARER.requires(scopes=["Secrets.Read"]))]


def ok_endpoint(dependency: object) -> Callable[[Identity], Awaitable[dict[str, bool]]]:
    """An endpoint answering ``{"ok": True}`` to callers that ``dependency`` (one of the
    aliases above) lets through."""

    async def endpoint(user: Identity) -> dict[str, bool]:
        return {"ok": True}

    endpoint.__annotations__["user"] = dependency  # where FastAPI finds the dependency
    return endpoint


#: Endpoints that only check the caller, by method, path and the dependency that checks.
OK_ROUTES = [
    ("GET", "/read", Reader),
    ("GET", "/either", ReadOrRole),
    ("POST", "/write", Writer),
    ("GET", "/plain", Plain),
]


def build_app(issuer: LocalIssuer, *, responses: bool = True) -> FastAPI:
    app = FastAPI()
    app.state.tokenguard_validator = issuer.validator([API])

    @app.get("/me")
    async def me(user: User) -> dict[str, Any]:
        return {"oid": user.object_id, "scopes": sorted(user.scopes)}

    for method, path, dependency in OK_ROUTES:
        app.add_api_route(path, ok_endpoint(dependency), methods=[method])

    if responses:
        add_openapi_responses(app)
    return app


def test_the_guard_is_an_oauth2_authorization_code_scheme(issuer: LocalIssuer) -> None:
    schema = TestClient(build_app(issuer)).get("/openapi.json").json()
    schemes = schema["components"]["securitySchemes"]
    assert schemes["oauth2"] == {
        "type": "oauth2",
        "description": "Azure managed-identity or OIDC access token (JWT)",
        "flows": {
            "authorizationCode": {
                "authorizationUrl": AUTHORIZE,
                "tokenUrl": TOKEN,
                "scopes": {
                    f"{API}/Secrets.Read": "Read secrets",
                    f"{API}/Secrets.Write": "Write secrets",
                },
            }
        },
    }
    # the default guard is unchanged: HTTP bearer
    assert schemes["bearer"] == {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT",
        "description": "Azure managed-identity or OIDC access token (JWT)",
    }
    paths = schema["paths"]
    assert paths["/me"]["get"]["security"] == [{"oauth2": []}]
    assert paths["/read"]["get"]["security"] == [{"oauth2": [f"{API}/Secrets.Read"]}]
    # a permission is named when the API exposes it as a scope ("Admin" is a role only)
    assert paths["/either"]["get"]["security"] == [{"oauth2": [f"{API}/Secrets.Read"]}]
    assert paths["/write"]["post"]["security"] == [{"oauth2": [f"{API}/Secrets.Write"]}]
    assert paths["/plain"]["get"]["security"] == [{"bearer": []}]
    assert "403" in paths["/read"]["get"]["responses"]


def test_without_add_openapi_responses_fastapi_lists_security_scopes(issuer: LocalIssuer) -> None:
    schema = TestClient(build_app(issuer, responses=False)).get("/openapi.json").json()
    assert schema["paths"]["/read"]["get"]["security"] == [{"oauth2": []}]
    assert "oauth2" in schema["components"]["securitySchemes"]


def test_oauth2_set_after_the_routes_shows_in_the_document(issuer: LocalIssuer) -> None:
    guard = TokenGuard(scheme_name="entra")
    app = FastAPI()
    app.state.tokenguard_validator = issuer.validator([API])
    dependency = guard.requires(scopes=["Secrets.Read"])

    @app.get("/read", dependencies=[Security(dependency)])
    async def read() -> dict[str, bool]:
        return {"ok": True}

    add_openapi_responses(app)
    guard.oauth2 = FLOW  # e.g. read from the discovery document at startup
    schema = TestClient(app).get("/openapi.json").json()
    assert schema["components"]["securitySchemes"]["entra"]["type"] == "oauth2"
    assert schema["paths"]["/read"]["get"]["security"] == [{"entra": [f"{API}/Secrets.Read"]}]


def test_a_users_token_is_accepted_and_scopes_checked(issuer: LocalIssuer) -> None:
    client = TestClient(build_app(issuer))
    reader = bearer(issuer.mint(API, kind="user", scopes=["Secrets.Read"]))
    assert client.get("/me", headers=reader).json()["scopes"] == ["Secrets.Read"]
    assert client.get("/read", headers=reader).status_code == 200
    assert client.post("/write", headers=reader).status_code == 403
    assert client.get("/read").status_code == 401


def test_swagger_ui_init_oauth() -> None:
    assert FLOW.swagger_ui_init_oauth("client-1") == {
        "clientId": "client-1",
        "usePkceWithAuthorizationCodeGrant": True,
        "scopes": f"{API}/Secrets.Read {API}/Secrets.Write",
    }
    chosen = FLOW.swagger_ui_init_oauth("c", scopes=["Secrets.Read", "openid"])
    assert chosen["scopes"] == f"{API}/Secrets.Read {API}/openid"
    assert FLOW.scope_uri("https://graph.microsoft.com/User.Read") == (
        "https://graph.microsoft.com/User.Read"
    )


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"authorization_url": "http://login.example/authorize"}, "authorization_url"),
        ({"token_url": "token"}, "token_url"),
        ({"refresh_url": "ftp://x"}, "refresh_url"),
        ({"scopes": {"two words": ""}}, "scope"),
        ({"scopes": {"ok": 1}}, "description"),
        ({"scope_prefix": "api://x y/"}, "scope_prefix"),
    ],
)
def test_construction_rejects_nonsense(options: dict[str, Any], message: str) -> None:
    fields: dict[str, Any] = {"authorization_url": AUTHORIZE, "token_url": TOKEN, **options}
    with pytest.raises(ValueError, match=message):
        OAuth2AuthorizationCode(**fields)


def test_scopes_are_frozen() -> None:
    scopes = {"A": "a"}
    flow = OAuth2AuthorizationCode(authorization_url=AUTHORIZE, token_url=TOKEN, scopes=scopes)
    scopes["B"] = "b"
    assert dict(flow.scopes) == {"A": "a"}
    with pytest.raises(TypeError):
        flow.scopes["C"] = "c"  # type: ignore[index]


DOCUMENT = {"authorization_endpoint": AUTHORIZE, "token_endpoint": TOKEN, "issuer": "x"}


def test_from_discovery() -> None:
    flow = OAuth2AuthorizationCode.from_discovery(
        DOCUMENT, scopes={"Secrets.Read": "r"}, scope_prefix=API + "/"
    )
    assert (flow.authorization_url, flow.token_url) == (AUTHORIZE, TOKEN)
    with pytest.raises(ValueError, match="authorization_endpoint"):
        OAuth2AuthorizationCode.from_discovery({"token_endpoint": TOKEN}, scopes={})


@pytest.mark.anyio
async def test_discover_reads_the_document() -> None:
    hits: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        hits.append(str(request.url))
        if request.url.path == "/missing":
            return httpx.Response(404)
        if request.url.path == "/partial":
            return httpx.Response(200, json={"issuer": "x"})
        return httpx.Response(200, json=DOCUMENT)

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
        url = "https://login.example/t/v2.0/.well-known/openid-configuration"
        flow = await OAuth2AuthorizationCode.discover(
            url, scopes={"Secrets.Read": "r"}, http_client=client
        )
        assert flow.token_url == TOKEN and hits == [url]
        with pytest.raises(ValueError, match=r"https://login.example/missing: HTTP status 404"):
            await OAuth2AuthorizationCode.discover(
                "https://login.example/missing", scopes={}, http_client=client
            )
        with pytest.raises(ValueError, match="partial: no authorization_endpoint"):
            await OAuth2AuthorizationCode.discover(
                "https://login.example/partial", scopes={}, http_client=client
            )
        assert not client.is_closed  # the caller's client stays open
    with pytest.raises(ValueError, match="https"):
        await OAuth2AuthorizationCode.discover("http://login.example/d", scopes={})
