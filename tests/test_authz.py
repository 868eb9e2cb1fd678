"""Authorization helpers: Requirement and the per-route decorator."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from tokenguard import (
    Identity,
    InsufficientScope,
    Requirement,
    TokenGuardMiddleware,
    TokenValidator,
    requires,
)
from tokenguard.testing import LocalIssuer

pytestmark = pytest.mark.anyio

MIRID = "/subscriptions/s/resourcegroups/rg/providers/Microsoft.Compute/virtualMachines/vm1"


def identity(**overrides: object) -> Identity:
    values: dict[str, object] = {
        "kind": "managed_identity",
        "object_id": "AAAA-oid",
        "tenant_id": "t",
        "app_id": "BBBB-app",
        "subject": "AAAA-oid",
        "issuer": "i",
        "audience": "a",
        "mi_resource_id": MIRID,
        "roles": frozenset({"Reader", "Writer"}),
        "scopes": frozenset({"read"}),
    }
    values.update(overrides)
    return Identity(**values)  # type: ignore[arg-type]


def reason(requirement: Requirement, who: Identity) -> str | None:
    try:
        requirement.check(who)
    except InsufficientScope as exc:
        return exc.reason
    return None


@pytest.mark.parametrize(
    ("requirement", "expected"),
    [
        (Requirement(), None),
        (Requirement(roles=["Reader"]), None),
        (Requirement(roles=["Reader", "Writer"]), None),
        (Requirement(roles=["Reader", "Admin"]), "missing_role"),
        (Requirement(any_role=["Admin", "Writer"]), None),
        (Requirement(any_role=["Admin"]), "missing_role"),
        (Requirement(scopes=["read"]), None),
        (Requirement(scopes=["write"]), "missing_scope"),
        (Requirement(mi_resource_ids=[MIRID.upper()]), None),
        (Requirement(mi_resource_ids=["/other"]), "caller_not_allowed"),
        (Requirement(app_ids=["bbbb-APP"]), None),
        (Requirement(object_ids=["aaaa-oid"]), None),
        (Requirement(object_ids=["x"], app_ids=["bbbb-app"]), None),
        (Requirement(object_ids=["x"], app_ids=["y"]), "caller_not_allowed"),
        (Requirement(kinds=["managed_identity"]), None),
        (Requirement(kinds=["user"]), "caller_not_allowed"),
    ],
)
def test_requirement_check(requirement: Requirement, expected: str | None) -> None:
    assert reason(requirement, identity()) == expected


def test_allow_list_needs_the_claim_present() -> None:
    assert reason(Requirement(mi_resource_ids=[MIRID]), identity(mi_resource_id=None)) == (
        "caller_not_allowed"
    )


def test_missing_roles_are_named_in_the_error() -> None:
    with pytest.raises(InsufficientScope) as info:
        Requirement(roles=["Admin"]).check(identity())
    assert info.value.required == {"Admin"}
    assert info.value.status_code == 403


@requires(roles=["Writer"])
async def write(request: Request) -> PlainTextResponse:
    return PlainTextResponse("written")


@requires(Requirement(any_role=["Reader"]))
def read(request: Request) -> PlainTextResponse:
    return PlainTextResponse("read")


@pytest.fixture
async def client(session_issuer: LocalIssuer) -> AsyncIterator[httpx.AsyncClient]:
    validator: TokenValidator = session_issuer.validator("https://vault.azure.net")
    app = Starlette(
        routes=[Route("/write", write), Route("/read", read), Route("/open", read)],
        middleware=[
            Middleware(
                TokenGuardMiddleware,
                validator=validator,
                allow_anonymous=True,
                challenge_params={"resource": "https://vault.azure.net"},
            )
        ],
    )
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        yield c


async def test_decorator_answers_403_and_401(
    client: httpx.AsyncClient, session_issuer: LocalIssuer
) -> None:
    reader = {"Authorization": "Bearer " + session_issuer.mint(roles=["Reader"])}
    writer = {"Authorization": "Bearer " + session_issuer.mint(roles=["Writer"])}
    assert (await client.get("/write", headers=writer)).text == "written"
    assert (await client.get("/read", headers=reader)).text == "read"
    denied = await client.get("/write", headers=reader)
    assert denied.status_code == 403
    assert denied.headers["www-authenticate"] == (
        'Bearer realm="tokenguard", resource="https://vault.azure.net", '
        'error="insufficient_scope", error_description="The caller lacks a required role", '
        'scope="Writer"'
    )
    anonymous = await client.get("/write")
    assert anonymous.status_code == 401
    assert anonymous.headers["www-authenticate"] == (
        'Bearer realm="tokenguard", resource="https://vault.azure.net"'
    )


async def test_decorator_without_middleware_answers_401() -> None:
    app = Starlette(routes=[Route("/write", write)])
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        response = await c.get("/write")
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == 'Bearer realm="tokenguard"'
