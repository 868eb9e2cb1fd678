"""tokenguard.fastapi: dependencies, requirements, OpenAPI scheme, with and without middleware."""

from __future__ import annotations

import importlib
import logging
import sys
from collections.abc import Awaitable, Callable, Iterator
from typing import Annotated, Any

import fastapi
import httpx
import pytest
from fastapi import Depends, FastAPI, Security, WebSocket
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from tokenguard import (
    Identity,
    Requirement,
    TokenGuardMiddleware,
    TokenValidator,
    fingerprint,
    get_identity,
)
from tokenguard.fastapi import TokenGuard, TokenGuardHTTPException, add_error_handler
from tokenguard.testing import LocalIssuer

from .conftest import VAULT
from .helpers import RecordingObserver, bearer, closing_spy

FASTAPI_VERSION = tuple(int(part) for part in fastapi.__version__.split(".")[:2])
#: A role no route here requires: a token must grant something to be valid at all.
ANY_ROLE = ["Other"]
MI_ID = (
    "/subscriptions/00000000-0000-0000-0000-000000000001/resourcegroups/rg/providers/"
    "Microsoft.ManagedIdentity/userAssignedIdentities/reporter"
)


#: Module-level guards: FastAPI resolves ``Annotated`` aliases in module globals (the
#: annotations are postponed). They have no validator of their own; each test app puts
#: one on ``app.state``, which is also how the lookup is tested.
GUARD = TokenGuard()
KV_GUARD = TokenGuard(
    realm=None,
    challenge_params={"authorization": "https://login.windows.net/t", "resource": VAULT},
)
Caller = Annotated[Identity, Depends(GUARD.identity)]
MaybeCaller = Annotated[Identity | None, Depends(GUARD.optional_identity)]
Reader = Annotated[Identity, Security(GUARD.requires(roles=["Secrets.Read"]))]
Writer = Annotated[Identity, Security(GUARD.identity, scopes=["Secrets.Write"])]
ManagedIdentity = Annotated[Identity, Depends(GUARD.requires(kinds=["managed_identity"]))]
KvCaller = Annotated[Identity, Depends(KV_GUARD.identity)]
ONLY_REPORTER = Depends(GUARD.requires(mi_resource_ids=[MI_ID]))


def who(identity: Identity | None) -> dict[str, Any]:
    if identity is None:
        return {"anonymous": True}
    return {"kind": identity.kind, "oid": identity.object_id, "roles": sorted(identity.roles)}


def who_endpoint(dependency: object) -> Callable[[Identity | None], Awaitable[dict[str, Any]]]:
    """An endpoint answering :func:`who` for the identity that ``dependency`` (one of the
    aliases above) resolves."""

    async def endpoint(identity: Identity | None) -> dict[str, Any]:
        return who(identity)

    # The alias object, not its name: FastAPI evaluates names in module globals only.
    endpoint.__annotations__["identity"] = dependency
    return endpoint


#: Endpoints that only answer who the caller is, by the dependency that resolves it.
WHO_ROUTES = {
    "/me": Caller,
    "/maybe": MaybeCaller,
    "/read": Reader,
    "/scoped": Writer,
    "/kv": KvCaller,
}


def build_app(validator: TokenValidator | None, **fastapi_options: Any) -> FastAPI:
    app = FastAPI(**fastapi_options)
    if validator is not None:
        app.state.tokenguard_validator = validator

    @app.get("/public")
    async def public() -> dict[str, bool]:
        return {"ok": True}

    for path, dependency in WHO_ROUTES.items():
        app.get(path)(who_endpoint(dependency))

    @app.get("/reporter", dependencies=[ONLY_REPORTER])
    async def reporter(request: Request) -> dict[str, Any]:
        # The dependency stored the identity where get_identity() finds it.
        return who(get_identity(request))

    @app.get("/both")
    async def both(first: Caller, second: ManagedIdentity) -> dict[str, Any]:
        return {"same": first is second}

    @app.websocket("/ws")
    async def ws(websocket: WebSocket, identity: Caller) -> None:
        await websocket.accept()
        await websocket.send_json({"oid": identity.object_id})
        await websocket.close()

    return app


@pytest.fixture
def issuer(session_issuer: LocalIssuer) -> LocalIssuer:
    """These tests never change keys: share the session's issuer (no RSA key per test)."""
    return session_issuer


@pytest.fixture
def observer() -> RecordingObserver:
    return RecordingObserver()


@pytest.fixture
def validator(issuer: LocalIssuer, observer: RecordingObserver) -> TokenValidator:
    return issuer.validator([VAULT], observer=observer)


@pytest.fixture
def client(validator: TokenValidator) -> Iterator[TestClient]:
    with TestClient(build_app(validator)) as c:
        yield c


# -- identity without the middleware --------------------------------------------------


def test_valid_token_yields_identity(client: TestClient, issuer: LocalIssuer) -> None:
    token = issuer.mint(VAULT, object_id="oid-1", roles=["Secrets.Read"])
    response = client.get("/me", headers=bearer(token))
    assert response.status_code == 200
    assert response.json() == {
        "kind": "managed_identity",
        "oid": "oid-1",
        "roles": ["Secrets.Read"],
    }


def test_missing_token_is_401_with_bare_challenge(client: TestClient) -> None:
    response = client.get("/me")
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == 'Bearer realm="tokenguard"'
    assert response.json() == {
        "detail": {"error": "unauthenticated", "error_description": "A bearer token is required"}
    }


@pytest.mark.parametrize(
    ("case", "reason"),
    [("forged", "The token signature is invalid"), ("expired", "The token is expired")],
)
def test_bad_token_is_401_invalid_token(
    client: TestClient, issuer: LocalIssuer, case: str, reason: str
) -> None:
    if case == "forged":
        token = issuer.forge(VAULT)
    else:
        token = issuer.mint(VAULT, issued_at=issuer.clock() - 7200, lifetime=3600)
    response = client.get("/me", headers=bearer(token))
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == (
        f'Bearer realm="tokenguard", error="invalid_token", error_description="{reason}"'
    )
    assert token not in response.text


def test_other_scheme_counts_as_no_token(client: TestClient) -> None:
    response = client.get("/me", headers={"Authorization": "Basic dXNlcjpwYXNz"})
    assert response.status_code == 401
    assert "error=" not in response.headers["www-authenticate"]


@pytest.mark.parametrize(
    ("headers", "url", "description"),
    [
        ([("authorization", "Bearer a.b.c"), ("authorization", "Bearer d.e.f")], "/me", "More"),
        ([("authorization", "Bearer ")], "/me", "The bearer token is empty"),
        ([], "/me?access_token=a.b.c", "Tokens in the query string"),
        ([("authorization", "Bearer a.b.c")], "/me?access_token=a.b.c", "more than one way"),
        ([("authorization", "Basic dTpw")], "/me?access_token=a.b.c", "Tokens in the query"),
    ],
)
def test_malformed_requests_are_400(
    client: TestClient, headers: list[tuple[str, str]], url: str, description: str
) -> None:
    response = client.get(url, headers=headers)
    assert response.status_code == 400
    assert 'error="invalid_request"' in response.headers["www-authenticate"]
    assert description in response.json()["detail"]["error_description"]


def test_oversized_header_is_401_too_large(client: TestClient, validator: TokenValidator) -> None:
    response = client.get("/me", headers=bearer("a" * (validator.max_token_bytes + 100)))
    assert response.status_code == 401
    assert response.json()["detail"]["error_description"] == "The token is too large"


def test_keys_unavailable_is_503_with_retry_after(issuer: LocalIssuer) -> None:
    down = httpx.AsyncClient(transport=httpx.MockTransport(lambda r: httpx.Response(500)))
    validator = TokenValidator([issuer.issuer_config([VAULT])], http_client=down)
    with TestClient(build_app(validator)) as client:
        response = client.get("/me", headers=bearer(issuer.mint(VAULT)))
    assert response.status_code == 503
    assert int(response.headers["retry-after"]) > 0
    assert "www-authenticate" not in response.headers


def test_challenge_params_without_middleware(validator: TokenValidator) -> None:
    with TestClient(build_app(validator)) as client:
        response = client.get("/kv")
    assert response.headers["www-authenticate"] == (
        'Bearer authorization="https://login.windows.net/t", resource="https://vault.azure.net"'
    )


def test_error_handler_renders_flat_body(validator: TokenValidator) -> None:
    app = build_app(validator)
    add_error_handler(app)
    with TestClient(app) as client:
        response = client.get("/me")
    assert response.status_code == 401
    assert response.json() == {
        "error": "unauthenticated",
        "error_description": "A bearer token is required",
    }
    assert response.headers["www-authenticate"] == 'Bearer realm="tokenguard"'


# -- optional identity ----------------------------------------------------------------


def test_optional_identity(client: TestClient, issuer: LocalIssuer) -> None:
    assert client.get("/maybe").json() == {"anonymous": True}
    token = issuer.mint(VAULT, roles=ANY_ROLE, object_id="oid-2")
    assert client.get("/maybe", headers=bearer(token)).json()["oid"] == "oid-2"
    # A bad token is not anonymity: it is refused.
    assert client.get("/maybe", headers=bearer(issuer.forge(VAULT))).status_code == 401


# -- requirements ---------------------------------------------------------------------


def test_requires_role(client: TestClient, issuer: LocalIssuer) -> None:
    ok = client.get("/read", headers=bearer(issuer.mint(VAULT, roles=["Secrets.Read"])))
    assert ok.status_code == 200
    denied = client.get("/read", headers=bearer(issuer.mint(VAULT, roles=["Other"])))
    assert denied.status_code == 403
    assert denied.headers["www-authenticate"] == (
        'Bearer realm="tokenguard", error="insufficient_scope", '
        'error_description="The caller lacks a required role", scope="Secrets.Read"'
    )
    assert client.get("/read").status_code == 401


def test_security_scopes_check_roles_and_delegated_scopes(
    client: TestClient, issuer: LocalIssuer
) -> None:
    app_token = issuer.mint(VAULT, roles=["Secrets.Write"])
    user_token = issuer.mint(VAULT, kind="user", scopes=["Secrets.Write"])
    reader = issuer.mint(VAULT, roles=["Secrets.Read"])
    assert client.get("/scoped", headers=bearer(app_token)).status_code == 200
    assert client.get("/scoped", headers=bearer(user_token)).status_code == 200
    denied = client.get("/scoped", headers=bearer(reader))
    assert denied.status_code == 403
    assert 'scope="Secrets.Write"' in denied.headers["www-authenticate"]
    user_denied = client.get(
        "/scoped", headers=bearer(issuer.mint(VAULT, kind="user", scopes=["Other"]))
    )
    assert user_denied.json()["detail"]["error_description"] == "The caller lacks a required scope"


def test_caller_allow_list(client: TestClient, issuer: LocalIssuer) -> None:
    allowed = issuer.mint(VAULT, roles=ANY_ROLE, mi_resource_id=MI_ID.upper(), object_id="oid-r")
    response = client.get("/reporter", headers=bearer(allowed))
    assert response.status_code == 200
    assert response.json()["oid"] == "oid-r"
    other = client.get("/reporter", headers=bearer(issuer.mint(VAULT, roles=ANY_ROLE)))
    assert other.status_code == 403
    assert other.json()["detail"]["error_description"] == "The caller is not allowed"


def test_requires_accepts_a_requirement_object(validator: TokenValidator) -> None:
    guard = TokenGuard(validator)
    dependency = guard.requires(Requirement(any_role=["A", "B"]))
    assert dependency.requirement == Requirement(any_role=["A", "B"])


def test_repeated_token_is_served_from_the_cache(
    client: TestClient, issuer: LocalIssuer, observer: RecordingObserver
) -> None:
    token = issuer.mint(VAULT, roles=ANY_ROLE)
    assert client.get("/me", headers=bearer(token)).status_code == 200
    assert client.get("/me", headers=bearer(token)).status_code == 200
    assert [(o, r, c) for o, r, _, c in observer.validations] == [
        ("valid", None, False),
        ("valid", None, True),
    ]


def test_two_dependencies_validate_once(
    client: TestClient, issuer: LocalIssuer, observer: RecordingObserver
) -> None:
    response = client.get("/both", headers=bearer(issuer.mint(VAULT, roles=ANY_ROLE)))
    assert response.json() == {"same": True}
    assert [(o, r, c) for o, r, _, c in observer.validations] == [("valid", None, False)]


# -- with the middleware --------------------------------------------------------------


def test_with_middleware_reuses_its_identity(
    validator: TokenValidator, issuer: LocalIssuer, observer: RecordingObserver
) -> None:
    # No validator on the guard and none on app.state: the identity must come from the scope.
    app = build_app(
        None,
        middleware=[
            Middleware(
                TokenGuardMiddleware,
                validator=validator,
                realm="api",
                exclude_paths=["/public", "/openapi.json"],
            )
        ],
    )
    with TestClient(app) as client:
        token = issuer.mint(VAULT, object_id="oid-3", roles=["Secrets.Read"])
        assert client.get("/read", headers=bearer(token)).json()["oid"] == "oid-3"
        denied = client.get("/read", headers=bearer(issuer.mint(VAULT, roles=ANY_ROLE)))
        # The middleware's realm shapes the dependency's 403 too.
        assert denied.status_code == 403
        assert denied.headers["www-authenticate"].startswith('Bearer realm="api", error=')
        # The middleware answers missing tokens itself, with its flat body.
        missing = client.get("/me")
        assert missing.status_code == 401
        assert missing.json()["error"] == "unauthenticated"
    assert [c[3] for c in observer.validations] == [False, False]  # one full validation per token


def test_excluded_path_validates_in_the_dependency(
    validator: TokenValidator, issuer: LocalIssuer
) -> None:
    app = build_app(
        validator,
        middleware=[Middleware(TokenGuardMiddleware, validator=validator, exclude_paths=["/me"])],
    )
    with TestClient(app) as client:
        response = client.get(
            "/me", headers=bearer(issuer.mint(VAULT, roles=ANY_ROLE, object_id="oid-4"))
        )
        assert response.json()["oid"] == "oid-4"
        assert client.get("/me").status_code == 401


def test_guard_with_its_own_validator(validator: TokenValidator, issuer: LocalIssuer) -> None:
    guard = TokenGuard(validator)
    app = FastAPI()  # nothing on app.state: the guard's validator is used

    @app.get("/own", dependencies=[Security(guard.requires(roles=["R"]))])
    async def own(request: Request) -> dict[str, Any]:
        return who(get_identity(request))

    with TestClient(app) as client:
        token = issuer.mint(VAULT, object_id="oid-5", roles=["R"])
        assert client.get("/own", headers=bearer(token)).json()["oid"] == "oid-5"
        assert (
            client.get("/own", headers=bearer(issuer.mint(VAULT, roles=ANY_ROLE))).status_code
            == 403
        )
        assert client.get("/own").status_code == 401


def test_guard_without_any_validator_is_a_configuration_error() -> None:
    with (
        TestClient(build_app(None)) as client,
        pytest.raises(RuntimeError, match=r"app\.state\.tokenguard_validator"),
    ):
        client.get("/me", headers=bearer("a.b.c"))


# -- websockets -----------------------------------------------------------------------


def test_websocket_dependency(validator: TokenValidator, issuer: LocalIssuer) -> None:
    with TestClient(build_app(validator)) as client:
        token = issuer.mint(VAULT, roles=ANY_ROLE, object_id="oid-ws")
        with client.websocket_connect("/ws", headers=bearer(token)) as conn:
            assert conn.receive_json() == {"oid": "oid-ws"}
        with pytest.raises(WebSocketDisconnect) as info, client.websocket_connect("/ws") as conn:
            conn.receive_json()
        assert info.value.code == 1008


# -- lifespan -------------------------------------------------------------------------


def test_lifespan_warms_keys_and_closes_validator(
    validator: TokenValidator, issuer: LocalIssuer, monkeypatch: pytest.MonkeyPatch
) -> None:
    closed = closing_spy(validator, monkeypatch)
    # The app has no validator on its state: the guard's lifespan puts it there.
    app = build_app(None, lifespan=TokenGuard(validator).lifespan)
    fetched = issuer.hits["jwks"]
    with TestClient(app) as client:
        assert issuer.hits["jwks"] == fetched + 1  # fetched at startup, before any request
        assert app.state.tokenguard_validator is validator
        assert not closed
        assert (
            client.get("/me", headers=bearer(issuer.mint(VAULT, roles=ANY_ROLE))).status_code == 200
        )
        assert issuer.hits["jwks"] == fetched + 1
    assert closed == [True]


def test_lifespan_needs_a_validator() -> None:
    with pytest.raises(RuntimeError, match="needs a guard built with a validator"):
        TokenGuard().lifespan(FastAPI())


# -- OpenAPI --------------------------------------------------------------------------


def test_openapi_declares_bearer_scheme_and_locks(validator: TokenValidator) -> None:
    with TestClient(build_app(validator)) as client:
        schema = client.get("/openapi.json").json()
    assert schema["components"]["securitySchemes"] == {
        "bearer": {
            "type": "http",
            "scheme": "bearer",
            "bearerFormat": "JWT",
            "description": "Azure managed-identity or OIDC access token (JWT)",
        }
    }
    paths = schema["paths"]
    assert "security" not in paths["/public"]["get"]
    for path in ("/me", "/maybe", "/read", "/reporter"):
        assert paths[path]["get"]["security"] == [{"bearer": []}], path
    # FastAPI renders these two differently across the supported range (make test-lowest):
    # before 0.124 each dependency of one scheme adds its own (identical) requirement, and
    # before 0.123 Security scopes are listed only for OAuth2 and OpenID Connect schemes.
    merged = FASTAPI_VERSION >= (0, 124)
    assert paths["/both"]["get"]["security"] == [{"bearer": []}] * (1 if merged else 2)
    scopes = ["Secrets.Write"] if FASTAPI_VERSION >= (0, 123) else []
    assert paths["/scoped"]["get"]["security"] == [{"bearer": scopes}]
    # No token parameter leaks into the operation: the scheme carries it.
    assert "parameters" not in paths["/me"]["get"]


def test_docs_page_loads(validator: TokenValidator) -> None:
    with TestClient(build_app(validator)) as client:
        response = client.get("/docs")
    assert response.status_code == 200
    assert "/openapi.json" in response.text


# -- optional dependency --------------------------------------------------------------


def test_import_without_fastapi_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delitem(sys.modules, "tokenguard.fastapi")
    monkeypatch.setitem(sys.modules, "fastapi", None)  # makes `import fastapi` fail
    with pytest.raises(ImportError) as info:
        importlib.import_module("tokenguard.fastapi")
    assert "pip install 'tokenguard-asgi[fastapi]'" in str(info.value)
    assert info.value.__cause__ is None
    assert info.value.__suppress_context__


# -- logging --------------------------------------------------------------------------


def test_request_rejection_is_logged_without_token(
    client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="tokenguard")
    client.get("/read", headers=bearer("x"))  # not a JWT: validator logs it
    client.get("/me")
    records = [r for r in caplog.records if r.name == "tokenguard"]
    assert [r.getMessage() for r in records] == [
        f"request rejected: reason=malformed status=401 fingerprint={fingerprint('x')}",
        "request rejected: reason=missing_token status=401",
    ]
    assert records[1].__dict__["reason"] == "missing_token"
    assert records[1].__dict__["status"] == 401


def test_http_exception_keeps_the_error(validator: TokenValidator) -> None:
    from tokenguard import MissingToken

    exc = TokenGuardHTTPException(MissingToken(), {"WWW-Authenticate": "Bearer"})
    assert exc.status_code == 401
    assert isinstance(exc.error, MissingToken)
