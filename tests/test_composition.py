"""Where the parts meet: the middleware and FastAPI guards with different validators.

A guard trusts an identity already in the scope only when its own validator verified
it; otherwise it verifies the request's token itself. Without that, a token the
middleware accepted for one API passed another API's guard on its claims alone.
"""

# No ``from __future__ import annotations``: FastAPI reads these annotations at run time.

import logging
from collections.abc import Iterator
from typing import Annotated, Any

import httpx
import pytest
from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.testclient import TestClient
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.routing import Mount

from tokenguard import Identity, Requirement, TokenGuardMiddleware, TokenValidator, get_identity
from tokenguard.fastapi import TokenGuard
from tokenguard.testing import LocalIssuer

from .helpers import RecordingObserver, bearer, serve

PUBLIC = "api://public-api"
ADMIN = "api://admin-api"


@pytest.fixture
def public(issuer: LocalIssuer) -> TokenValidator:
    return issuer.validator([PUBLIC])


@pytest.fixture
def admin(issuer: LocalIssuer) -> TokenValidator:
    return issuer.validator([ADMIN])


def admin_app(admin: TokenValidator, **options: Any) -> FastAPI:
    """``/admin`` needs the Admin role of a token for the admin API; ``/whoami`` any caller."""
    guard = TokenGuard(admin)
    app = FastAPI(**options)

    @app.get("/admin")
    def admin_route(who: Annotated[Identity, Depends(guard.requires(roles=["Admin"]))]) -> Any:
        return {"aud": who.audience}

    @app.get("/whoami")
    def whoami(request: Request) -> Any:
        identity = get_identity(request)
        return {"aud": None if identity is None else identity.audience}

    return app


def admin_status(client: TestClient, issuer: LocalIssuer, audience: str) -> int:
    """The status of ``GET /admin`` with a token of ``issuer`` for ``audience`` holding Admin."""
    return client.get("/admin", headers=bearer(issuer.mint(audience, roles=["Admin"]))).status_code


def test_guard_refuses_an_identity_its_validator_did_not_verify(
    issuer: LocalIssuer, public: TokenValidator, admin: TokenValidator
) -> None:
    # The reviewer's case: app-wide middleware for the public API (anonymous allowed),
    # one route guarded for the admin API. A public-API token carrying Admin got 200.
    app = admin_app(admin)
    app.add_middleware(TokenGuardMiddleware, validator=public, allow_anonymous=True)
    forged_role = issuer.mint(PUBLIC, roles=["Admin"])
    with TestClient(app) as client:
        answer = client.get("/admin", headers=bearer(forged_role))
        assert answer.status_code == 401
        assert 'error="invalid_token"' in answer.headers["www-authenticate"]
        # The middleware's own view of that caller is untouched.
        assert client.get("/whoami", headers=bearer(forged_role)).json() == {"aud": PUBLIC}
        assert client.get("/admin").status_code == 401  # anonymous: the guard wants a token


def test_guard_verifies_on_a_path_the_middleware_skips(
    issuer: LocalIssuer, public: TokenValidator, admin: TokenValidator
) -> None:
    app = admin_app(admin)
    app.add_middleware(TokenGuardMiddleware, validator=public, exclude_paths=["/admin"])
    with TestClient(app) as client:
        token = issuer.mint(ADMIN, roles=["Admin"])
        assert client.get("/admin", headers=bearer(token)).json() == {"aud": ADMIN}
        no_role = issuer.mint(ADMIN, roles=["Reader"])
        assert client.get("/admin", headers=bearer(no_role)).status_code == 403
        assert admin_status(client, issuer, PUBLIC) == 401


def test_two_guards_with_different_validators_on_one_route(
    issuer: LocalIssuer, public: TokenValidator, admin: TokenValidator
) -> None:
    # No middleware: a router-wide dependency on one guard, the route on another.
    outer, inner = TokenGuard(public), TokenGuard(admin)
    router = APIRouter(dependencies=[Depends(outer.identity)])

    @router.get("/admin")
    def route(who: Annotated[Identity, Depends(inner.requires(roles=["Admin"]))]) -> Any:
        return {"aud": who.audience}

    app = FastAPI()
    app.include_router(router)
    with TestClient(app) as client:
        # Good for the router's validator, not for the route's: refused.
        assert admin_status(client, issuer, PUBLIC) == 401
        # Good for the route's validator, not for the router's: refused as well.
        assert admin_status(client, issuer, ADMIN) == 401
        both = issuer.mint([PUBLIC, ADMIN], roles=["Admin"])
        assert client.get("/admin", headers=bearer(both)).json() == {"aud": ADMIN}


def test_guard_with_another_issuer_refuses_the_middlewares_caller(
    issuer: LocalIssuer,
) -> None:
    other = LocalIssuer(base_url="https://login.other.test")
    app = admin_app(other.validator([ADMIN]))
    app.add_middleware(TokenGuardMiddleware, validator=issuer.validator([ADMIN]))
    with TestClient(app) as client:
        # Same audience and role, but the middleware's issuer, not the guard's.
        assert admin_status(client, issuer, ADMIN) == 401
        # The guard's issuer is unknown to the middleware, which refuses first.
        assert admin_status(client, other, ADMIN) == 401


def test_same_validator_validates_once_per_request(issuer: LocalIssuer) -> None:
    observer = RecordingObserver()
    validator = issuer.validator([ADMIN], observer=observer)
    first, second = TokenGuard(validator), TokenGuard(validator)
    app = FastAPI()

    @app.get("/admin")
    def route(
        a: Annotated[Identity, Depends(first.requires(roles=["Admin"]))],
        b: Annotated[Identity, Depends(second.identity)],
    ) -> Any:
        return {"same": a is b}

    app.add_middleware(TokenGuardMiddleware, validator=validator)
    token = issuer.mint(ADMIN, roles=["Admin"])
    with TestClient(app) as client:
        for _ in range(3):
            assert client.get("/admin", headers=bearer(token)).json() == {"same": True}
    # One validation per request, by the middleware: a full one, then cache hits.
    assert [cached for *_, cached in observer.validations] == [False, True, True]


def test_guard_without_validator_uses_the_middlewares(issuer: LocalIssuer) -> None:
    guard = TokenGuard()
    app = FastAPI()

    @app.get("/admin")
    def route(who: Annotated[Identity, Depends(guard.requires(roles=["Admin"]))]) -> Any:
        return {"oid": who.object_id}

    app.add_middleware(
        TokenGuardMiddleware, validator=issuer.validator([ADMIN]), exclude_paths=["/open"]
    )
    with TestClient(app) as client:
        token = issuer.mint(ADMIN, roles=["Admin"], object_id="oid-1")
        assert client.get("/admin", headers=bearer(token)).json() == {"oid": "oid-1"}


def test_composition_behind_mount_and_root_path(
    issuer: LocalIssuer, public: TokenValidator, admin: TokenValidator
) -> None:
    api = admin_app(admin)
    outer = Starlette(
        routes=[Mount("/api", app=api)],
        middleware=[Middleware(TokenGuardMiddleware, validator=public, allow_anonymous=True)],
    )
    with TestClient(outer, root_path="/service") as client:
        wrong = issuer.mint(PUBLIC, roles=["Admin"])
        assert client.get("/service/api/admin", headers=bearer(wrong)).status_code == 401
        right = issuer.mint([PUBLIC, ADMIN], roles=["Admin"])
        assert client.get("/service/api/admin", headers=bearer(right)).json() == {"aud": ADMIN}


@pytest.fixture
def served(issuer: LocalIssuer, public: TokenValidator, admin: TokenValidator) -> Iterator[str]:
    app = admin_app(admin)
    app.add_middleware(TokenGuardMiddleware, validator=public, allow_anonymous=True)
    with serve(app) as url:
        yield url


def test_composition_under_uvicorn(
    issuer: LocalIssuer, served: str, public: TokenValidator, admin: TokenValidator
) -> None:
    wrong = issuer.mint(PUBLIC, roles=["Admin"])
    right = issuer.mint([PUBLIC, ADMIN], roles=["Admin"])
    with httpx.Client(base_url=served) as client:
        for _ in range(2):  # verified, then cache hits where a validator accepted it
            assert client.get("/admin", headers=bearer(wrong)).status_code == 401
            assert client.get("/admin", headers=bearer(right)).status_code == 200
    # The second round: both tokens from the middleware's cache; only the right one
    # from the guard's, which never cached (or accepted) the public-API token.
    assert (public.cache.hits, admin.cache.hits) == (2, 1)


def test_guard_refusal_names_the_caller_not_the_token(
    issuer: LocalIssuer, admin: TokenValidator, caplog: pytest.LogCaptureFixture
) -> None:
    app = admin_app(admin)
    token = issuer.mint(ADMIN, roles=["Reader"], object_id="oid-refused")
    caplog.set_level(logging.INFO, logger="tokenguard")
    with TestClient(app) as client:
        assert client.get("/admin", headers=bearer(token)).status_code == 403
    [line] = [r.getMessage() for r in caplog.records if "rejected" in r.getMessage()]
    assert line.startswith("request rejected: reason=missing_role status=403 caller=oid-refused")
    assert f"issuer={issuer.issuer}" in line
    for part in token.split("."):
        assert part not in caplog.text


def test_guard_requires_takes_every_requirement_option(
    issuer: LocalIssuer, admin: TokenValidator
) -> None:
    guard = TokenGuard(admin)
    with pytest.raises(TypeError, match="not both"):
        guard.requires(Requirement(roles=["Admin"]), roles=["Admin"])
    with pytest.raises(TypeError, match="not a str"):
        guard.requires(roles="Admin")
    bound = guard.requires(permissions=["Admin"], issuers=[issuer.issuer])
    app = FastAPI()

    @app.get("/admin")
    def route(who: Annotated[Identity, Depends(bound)]) -> Any:
        return {"oid": who.object_id}

    with TestClient(app) as client:
        token = issuer.mint(ADMIN, roles=["Admin"], object_id="oid-2")
        assert client.get("/admin", headers=bearer(token)).json() == {"oid": "oid-2"}
        assert (
            client.get("/admin", headers=bearer(issuer.mint(ADMIN, roles=["x"]))).status_code == 403
        )


#: A B2B guest's home tenant, as Entra names it in the guest's ``idp`` claim.
GUEST_HOME = "0b1f6471-1bf0-4dda-aec3-cb9272f09590"


def guest_token(issuer: LocalIssuer, **claims: Any) -> str:
    """An Entra v2 user token of a B2B guest holding Admin (``idp`` names the home tenant)."""
    idp = {"idp": f"https://sts.windows.net/{GUEST_HOME}/"}
    return issuer.mint(ADMIN, kind="user", roles=["Admin"], claims={**idp, **claims})


def test_guard_refuses_guests_the_middleware_admits_on_every_cache_hit(
    issuer: LocalIssuer,
) -> None:
    observer = RecordingObserver()
    validator = issuer.validator([ADMIN], observer=observer)
    members_only = TokenGuard(validator).requires(roles=["Admin"], allow_guest_users=False)
    app = FastAPI()

    @app.get("/admin")
    def route(who: Annotated[Identity, Depends(members_only)]) -> Any:
        return {"oid": who.object_id}

    @app.get("/whoami")
    def whoami(request: Request) -> Any:
        identity = get_identity(request)
        return {"guest": None if identity is None else identity.is_guest}

    app.add_middleware(TokenGuardMiddleware, validator=validator)
    guest, by_acct = guest_token(issuer), guest_token(issuer, acct=1)
    member = issuer.mint(ADMIN, kind="user", roles=["Admin"], object_id="oid-member")
    with TestClient(app) as client:
        for _ in range(2):  # verified, then every token from the middleware's cache
            for token in (guest, by_acct):
                refused = client.get("/admin", headers=bearer(token))
                assert refused.status_code == 403
                assert "Guest users are not allowed" in refused.headers["www-authenticate"]
                assert client.get("/whoami", headers=bearer(token)).json() == {"guest": True}
            assert client.get("/admin", headers=bearer(member)).json() == {"oid": "oid-member"}
    # One validation per request, by the middleware (the guard reused its identity): each
    # token verified once, then cache hits, and the guard still refused both guests.
    cached = [c for *_, c in observer.validations]
    assert cached == [False, True, False, True, False] + [True] * 5, cached


def test_middleware_requirement_refuses_a_cached_guest(issuer: LocalIssuer) -> None:
    observer = RecordingObserver()
    validator = issuer.validator([ADMIN], observer=observer)
    app = admin_app(validator)
    app.add_middleware(
        TokenGuardMiddleware, validator=validator, require=Requirement(allow_guest_users=False)
    )
    guest = guest_token(issuer)
    with TestClient(app) as client:
        for _ in range(3):
            refused = client.get("/whoami", headers=bearer(guest))
            assert refused.status_code == 403
            assert 'error="insufficient_scope"' in refused.headers["www-authenticate"]
        member = issuer.mint(ADMIN, kind="user", roles=["Admin"])
        assert client.get("/whoami", headers=bearer(member)).json() == {"aud": ADMIN}
    # Verified once, refused twice more on the cache hit path by the same requirement.
    assert [c for *_, c in observer.validations] == [False, True, True, False]


def test_exclude_paths_of_a_mounted_apps_middleware_behind_root_path(
    issuer: LocalIssuer, admin: TokenValidator
) -> None:
    # The middleware is on the mounted app: its paths are relative to that app, whatever
    # the Mount and the server's root_path put in front of them.
    api = admin_app(admin)

    @api.get("/health")
    def health() -> Any:
        return {"ok": True}

    @api.get("/public/{name}")
    def public_page(name: str) -> Any:
        return {"page": name}

    api.add_middleware(
        TokenGuardMiddleware, validator=admin, exclude_paths=["/health", "/public/*"]
    )
    outer = Starlette(routes=[Mount("/api", app=api)])
    for root in ("", "/service"):
        with TestClient(outer, root_path=root) as client:
            assert client.get(f"{root}/api/health").json() == {"ok": True}
            assert client.get(f"{root}/api/public/faq").json() == {"page": "faq"}
            for protected in ("/api/whoami", "/api/admin", "/api/healthz", "/api/publicity"):
                assert client.get(f"{root}{protected}").status_code == 401, (root, protected)
            assert admin_status(client, issuer, ADMIN) == 404  # no /admin outside /api
            token = bearer(issuer.mint(ADMIN, roles=["Admin"]))
            assert client.get(f"{root}/api/admin", headers=token).json() == {"aud": ADMIN}
            assert client.get(f"{root}/api/whoami", headers=token).json() == {"aud": ADMIN}
