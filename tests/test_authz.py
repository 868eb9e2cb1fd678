"""Authorization helpers: Requirement and the per-route decorator."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

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

from .helpers import validator_of

pytestmark = pytest.mark.anyio

VAULT = "https://vault.azure.net"
#: A multi-tenant app keeps this client id in every tenant.
APP_ID = "6d1c0b7e-58a4-4a4e-8f7b-2c5a9e3d4f21"
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
        (Requirement(permissions=["Reader", "read"]), None),
        (Requirement(permissions=["write"]), "missing_role"),
        (Requirement(issuers=["i"]), None),
        (Requirement(issuers=["I"]), "caller_not_allowed"),  # iss is an exact string
        (Requirement(tenants=["T"]), None),
        (Requirement(tenants=["other"]), "caller_not_allowed"),
        (Requirement(object_ids=["aaaa-oid"], tenants=["t"]), None),
        (Requirement(object_ids=["aaaa-oid"], tenants=["other"]), "caller_not_allowed"),
        (Requirement(object_ids=["aaaa-oid"], issuers=["other"]), "caller_not_allowed"),
    ],
)
def test_requirement_check(requirement: Requirement, expected: str | None) -> None:
    assert reason(requirement, identity()) == expected


def test_allow_list_needs_the_claim_present() -> None:
    assert reason(Requirement(mi_resource_ids=[MIRID]), identity(mi_resource_id=None)) == (
        "caller_not_allowed"
    )


def test_a_user_missing_a_permission_lacks_a_scope() -> None:
    assert reason(Requirement(permissions=["write"]), identity(kind="user")) == "missing_scope"


KELVIN = "\u212a"  # KELVIN SIGN: str.lower() turns it into an ASCII "k"


@pytest.mark.parametrize(
    ("field", "entry", "value"),
    [
        (
            "mi_resource_ids",
            MIRID.replace("/rg/", "/rg-kv/"),
            MIRID.replace("/rg/", f"/rg-{KELVIN}v/"),
        ),
        ("app_ids", "bbbb-app-k", f"BBBB-app-{KELVIN}"),
        ("object_ids", "aaaa-oid-k", f"aaaa-oid-{KELVIN}"),
    ],
)
def test_allow_lists_fold_ascii_case_only(field: str, entry: str, value: str) -> None:
    assert value.lower() == entry.lower()  # what str.lower() would wrongly let through
    claim = field.removesuffix("s")  # the Identity field: mi_resource_id, app_id, object_id

    def allows(entries: list[str], caller_value: str) -> bool:
        options: dict[str, Any] = {field: entries}
        return reason(Requirement(**options), identity(**{claim: caller_value})) is None

    assert not allows([entry], value)
    assert not allows([entry.upper()], value)
    # ASCII letters still fold around the sign, which matches only itself.
    assert allows([value.upper()], value)
    assert allows([entry.upper()], entry)


def test_tenants_fold_ascii_case_only() -> None:
    assert reason(Requirement(tenants=["tk"]), identity(tenant_id=f"T{KELVIN}")) == (
        "caller_not_allowed"
    )
    assert reason(Requirement(tenants=["TK"]), identity(tenant_id="tk")) is None


@pytest.mark.parametrize(
    "field",
    [
        "roles",
        "any_role",
        "scopes",
        "permissions",
        "mi_resource_ids",
        "app_ids",
        "object_ids",
        "issuers",
        "tenants",
        "kinds",
    ],
)
def test_a_lone_string_is_a_type_error(field: str) -> None:
    options: dict[str, Any] = {field: "app"}
    with pytest.raises(TypeError) as info:
        Requirement(**options)
    assert str(info.value) == (
        f"{field} must be a collection of strings, not a str: {field}=['app']"
    )


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (b"Admin", "roles must be a collection of strings, not bytes: roles=[b'Admin']"),
        (3, "roles must be a collection of strings, not int"),
        (["Admin", 3], "roles must be a collection of strings, not holding int"),
    ],
)
def test_roles_must_be_strings(value: object, message: str) -> None:
    with pytest.raises(TypeError) as info:
        Requirement(roles=value)  # type: ignore[arg-type]
    assert str(info.value) == message


def test_unknown_kinds_are_refused() -> None:
    with pytest.raises(ValueError, match="managed-identity"):
        Requirement(kinds=["managed-identity"])  # type: ignore[list-item]


def test_collections_of_every_shape_are_accepted() -> None:
    expected = frozenset({"A", "B"})
    for value in (["A", "B"], ("A", "B"), {"A", "B"}, expected, (v for v in "AB")):
        assert Requirement(roles=value).roles == expected


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


def guarded(validator: TokenValidator, routes: dict[str, Requirement]) -> Starlette:
    """An app with one route per requirement, each under ``@requires``."""

    async def ok(request: Request) -> PlainTextResponse:
        return PlainTextResponse("ok")

    return Starlette(
        routes=[Route(path, requires(need)(ok)) for path, need in routes.items()],
        middleware=[Middleware(TokenGuardMiddleware, validator=validator)],
    )


async def test_allow_lists_bound_to_an_issuer_or_tenant() -> None:
    home, other = LocalIssuer(), LocalIssuer()
    oid = "0f5b4c1e-5f8e-4d42-9c53-0a2f3b1c7d10"
    routes = {
        "/oid": Requirement(object_ids=[oid]),
        "/oid/issuer": Requirement(object_ids=[oid], issuers=[home.issuer]),
        "/oid/tenant": Requirement(object_ids=[oid], tenants=[home.tenant_id.upper()]),
        "/app/issuer": Requirement(app_ids=[APP_ID], issuers=[home.issuer]),
    }
    validator = validator_of(VAULT, home, other)
    transport = httpx.ASGITransport(app=guarded(validator, routes))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:

        async def statuses(issuer: LocalIssuer) -> dict[str, int]:
            token = issuer.mint(object_id=oid, app_id=APP_ID, roles=["Other"])
            headers = {"Authorization": f"Bearer {token}"}
            return {path: (await client.get(path, headers=headers)).status_code for path in routes}

        from_home = await statuses(home)
        # The same claims signed by the other trusted issuer (another tenant).
        from_other = await statuses(other)
    await validator.aclose()
    assert from_home == dict.fromkeys(routes, 200)
    assert from_other == {"/oid": 200, "/oid/issuer": 403, "/oid/tenant": 403, "/app/issuer": 403}


async def test_kelvin_sign_in_xms_mirid_is_not_the_allowed_resource(issuer: LocalIssuer) -> None:
    allowed = "/subscriptions/s/resourceGroups/rg-kv/providers/Microsoft.Compute/virtualMachines/vm"
    validator = issuer.validator(VAULT)
    app = guarded(validator, {"/": Requirement(mi_resource_ids=[allowed])})
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        answers = []
        for mirid in (allowed.replace("rg-kv", "rg-\u212av"), allowed.upper()):
            token = issuer.mint(mi_resource_id=mirid, roles=["Other"])
            response = await client.get("/", headers={"Authorization": f"Bearer {token}"})
            answers.append(response.status_code)
    await validator.aclose()
    assert answers == [403, 200]


def test_fastapi_requires_refuses_a_lone_string_too() -> None:
    from tokenguard.fastapi import TokenGuard

    with pytest.raises(TypeError, match=r"roles=\['Secrets.Read'\]"):
        TokenGuard().requires(roles="Secrets.Read")


def test_a_misspelt_option_is_refused() -> None:
    with pytest.raises(TypeError, match=r"unexpected Requirement options \['role'\]"):
        Requirement(role=["Admin"])  # type: ignore[call-arg]


def test_guests_pass_unless_refused() -> None:
    guest = identity(kind="user", is_guest=True, roles=frozenset({"Reader"}))
    member = identity(kind="user", roles=frozenset({"Reader"}))
    assert Requirement().allow_guest_users is True
    assert reason(Requirement(roles=["Reader"]), guest) is None
    no_guests = Requirement(roles=["Reader"], allow_guest_users=False)
    assert reason(no_guests, guest) == "guest_not_allowed"
    assert reason(no_guests, member) is None
    # A caller condition that fails is named first.
    assert reason(Requirement(kinds=["app"], allow_guest_users=False), guest) == (
        "caller_not_allowed"
    )


def test_allow_guest_users_must_be_a_bool() -> None:
    with pytest.raises(TypeError, match="allow_guest_users must be a bool, not str"):
        Requirement(allow_guest_users="no")  # type: ignore[arg-type]


async def test_requires_refuses_guests_with_403(issuer: LocalIssuer) -> None:
    validator = issuer.validator(VAULT)

    async def ok(request: Request) -> PlainTextResponse:
        return PlainTextResponse("ok")

    app = Starlette(
        routes=[
            Route("/members", requires("Reader", allow_guest_users=False)(ok)),
            Route("/anyone", requires("Reader")(ok)),
        ],
        middleware=[Middleware(TokenGuardMiddleware, validator=validator)],
    )
    home = "0b1f6471-1bf0-4dda-aec3-cb9272f09590"
    guest = issuer.mint(
        kind="user", roles=["Reader"], claims={"idp": f"https://sts.windows.net/{home}/"}
    )
    member = issuer.mint(kind="user", roles=["Reader"])
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        refused = await c.get("/members", headers={"Authorization": f"Bearer {guest}"})
        passed = await c.get("/anyone", headers={"Authorization": f"Bearer {guest}"})
        welcome = await c.get("/members", headers={"Authorization": f"Bearer {member}"})
    await validator.aclose()
    assert refused.status_code == 403
    assert 'error="insufficient_scope"' in refused.headers["www-authenticate"]
    assert 'error_description="Guest users are not allowed"' in refused.headers["www-authenticate"]
    assert (passed.status_code, welcome.status_code) == (200, 200)


def test_fastapi_guard_requires_refuses_guests(issuer: LocalIssuer) -> None:
    from fastapi import Depends, FastAPI
    from fastapi.testclient import TestClient

    from tokenguard.fastapi import TokenGuard

    guard = TokenGuard(issuer.validator(VAULT))
    app = FastAPI(lifespan=guard.lifespan)

    @app.get("/members", dependencies=[Depends(guard.requires(allow_guest_users=False))])
    def members() -> str:
        return "ok"

    guest = issuer.mint(kind="user", roles=["Reader"], claims={"acct": 1})
    member = issuer.mint(kind="user", roles=["Reader"], claims={"acct": 0})
    with TestClient(app) as client:
        refused = client.get("/members", headers={"Authorization": f"Bearer {guest}"})
        welcome = client.get("/members", headers={"Authorization": f"Bearer {member}"})
    assert refused.status_code == 403
    assert "Guest users are not allowed" in refused.headers["www-authenticate"]
    assert welcome.status_code == 200
