"""An Identity as JSON: FastAPI routes that return one, and ``Identity.to_dict``."""

# No ``from __future__ import annotations``: FastAPI reads these annotations at run time.

from typing import Annotated, Any

import pytest
from fastapi import Depends, FastAPI
from fastapi.testclient import TestClient
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from tokenguard import Identity, TokenGuardMiddleware, TokenValidator, require_identity
from tokenguard.fastapi import TokenGuard
from tokenguard.testing import LocalIssuer

from .helpers import bearer

API = "api://reports"


@pytest.fixture
def validator(issuer: LocalIssuer) -> TokenValidator:
    return issuer.validator([API])


def test_route_returning_identity_answers_its_public_fields(
    issuer: LocalIssuer, validator: TokenValidator
) -> None:
    guard = TokenGuard(validator)
    app = FastAPI()
    Caller = Annotated[Identity, Depends(guard.identity)]

    @app.get("/me")
    def me(who: Caller) -> Identity:
        return who

    @app.get("/me/model", response_model=Identity)
    def me_model(who: Caller) -> Any:
        return who

    token = issuer.mint(API, roles=["Reader", "Admin"], object_id="oid-1")
    with TestClient(app) as client:
        for path in ("/me", "/me/model"):
            answer = client.get(path, headers=bearer(token))
            assert answer.status_code == 200
            body = answer.json()
            assert body["object_id"] == "oid-1"
            assert body["roles"] == ["Admin", "Reader"]
            assert body["audience"] == API
            assert "claims" not in body  # the token's claims only when asked
        schema = client.get("/openapi.json").json()["components"]["schemas"]["Identity"]
    assert set(schema["properties"]) == set(body)
    assert set(schema["required"]) == set(body)


@pytest.mark.anyio
async def test_to_dict_gives_claims_only_when_asked(
    issuer: LocalIssuer, validator: TokenValidator
) -> None:
    async with validator:
        identity = await validator.validate(issuer.mint(API, roles=["R"], object_id="o"))
    plain = identity.to_dict()
    assert plain["kind"] == identity.kind
    assert plain["roles"] == ["R"] and plain["scopes"] == []
    assert "claims" not in plain
    full = identity.to_dict(claims=True)
    assert full["claims"]["oid"] == "o"
    assert full["claims"] == dict(identity.claims)


def test_require_identity_behind_the_middleware(
    issuer: LocalIssuer, validator: TokenValidator
) -> None:
    async def me(request: Request) -> JSONResponse:
        who: Identity = require_identity(request)  # not Optional: mypy --strict is happy
        return JSONResponse({"oid": who.object_id})

    async def open_page(request: Request) -> JSONResponse:
        require_identity(request)
        return JSONResponse({})

    app = Starlette(
        routes=[Route("/me", me), Route("/open", open_page)],
        middleware=[Middleware(TokenGuardMiddleware, validator=validator, exclude_paths=["/open"])],
    )
    with TestClient(app) as client:
        token = issuer.mint(API, roles=["R"], object_id="oid-2")
        assert client.get("/me", headers=bearer(token)).json() == {"oid": "oid-2"}
        with pytest.raises(RuntimeError, match="no verified identity"):
            client.get("/open")


def test_openapi_lists_refusals_and_what_each_operation_requires(
    validator: TokenValidator,
) -> None:
    from fastapi import APIRouter, Security

    from tokenguard.fastapi import add_openapi_responses

    guard = TokenGuard(validator)
    app = FastAPI()
    router = APIRouter(dependencies=[Depends(guard.identity)])

    @router.get("/anyone")
    def anyone() -> dict[str, bool]:
        return {}

    @app.get("/admin")
    def admin(
        who: Annotated[Identity, Depends(guard.requires(roles=["Admin"], any_role=["A", "B"]))],
    ) -> dict[str, bool]:
        return {}

    @app.get("/write", responses={403: {"description": "declared by the route"}})
    def write(who: Annotated[Identity, Security(guard.identity, scopes=["W"])]) -> None:
        return None

    @app.get("/public")
    def public() -> None:
        return None

    app.include_router(router)
    add_openapi_responses(app)
    with TestClient(app) as client:
        paths = client.get("/openapi.json").json()["paths"]
    anyone_answers = paths["/anyone"]["get"]["responses"]
    assert "401" in anyone_answers and "403" not in anyone_answers
    assert "WWW-Authenticate" in anyone_answers["401"]["headers"]
    admin_403 = paths["/admin"]["get"]["responses"]["403"]["description"]
    assert admin_403 == "The caller lacks: roles Admin; one of the roles A, B"
    write_answers = paths["/write"]["get"]["responses"]
    assert "401" in write_answers
    assert write_answers["403"]["description"] == "declared by the route"
    assert set(paths["/public"]["get"]["responses"]) == {"200"}
    assert paths["/admin"]["get"]["security"] == [{"bearer": []}]
