"""The ASGI middleware: RFC 6750 answers, identity injection, websockets, lifespan."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.authentication import requires as starlette_requires
from starlette.middleware import Middleware
from starlette.requests import HTTPConnection, Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.testclient import TestClient
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from starlette.websockets import WebSocket, WebSocketDisconnect

from tokenguard import (
    Identity,
    Requirement,
    TokenGuardError,
    TokenGuardMiddleware,
    TokenGuardUser,
    TokenValidator,
    get_identity,
)
from tokenguard._cache import INDEX_BYTES
from tokenguard.testing import LocalIssuer

from .helpers import FakeClock, RecordingObserver, SwitchableIssuer, bearer, closing_spy

pytestmark = pytest.mark.anyio

VAULT = "https://vault.azure.net"
#: A role for tokens that must pass: by default a token granting nothing is refused.
ROLE = ["Secrets.Read"]


async def whoami(request: Request) -> JSONResponse:
    identity = get_identity(request)
    user = request.user
    return JSONResponse(
        {
            "kind": identity.kind if identity else None,
            "authenticated": user.is_authenticated,
            "name": user.display_name,
            "scopes": sorted(request.auth.scopes),
            "same": isinstance(user, TokenGuardUser) and user.identity is identity,
        }
    )


@starlette_requires("Secrets.Read")
async def secret(request: Request) -> PlainTextResponse:
    return PlainTextResponse("s3cret")


async def ws_endpoint(websocket: WebSocket) -> None:
    await websocket.accept()
    identity = get_identity(websocket)
    await websocket.send_text(identity.kind if identity else "anonymous")
    await websocket.close()


def build(validator: TokenValidator, **options: Any) -> Starlette:
    routes = [
        Route("/whoami", whoami),
        Route("/secret", secret),
        Route("/healthz", lambda r: PlainTextResponse("ok")),
        Route("/public/info", lambda r: PlainTextResponse("info")),
        WebSocketRoute("/ws", ws_endpoint),
    ]
    return Starlette(
        routes=routes, middleware=[Middleware(TokenGuardMiddleware, validator=validator, **options)]
    )


@pytest.fixture
def validator(session_issuer: LocalIssuer) -> TokenValidator:
    return session_issuer.validator(VAULT)


@pytest.fixture
async def client(validator: TokenValidator) -> AsyncIterator[httpx.AsyncClient]:
    app = build(validator, exclude_paths=["/healthz", "/public/*"])
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        yield c


async def test_valid_token_injects_identity_user_and_scopes(
    client: httpx.AsyncClient, session_issuer: LocalIssuer
) -> None:
    token = session_issuer.mint(roles=["Secrets.Read"])
    response = await client.get("/whoami", headers=bearer(token))
    assert response.status_code == 200
    assert response.json() == {
        "kind": "managed_identity",
        "authenticated": True,
        "name": "tokenguard-vm",
        "scopes": ["Secrets.Read"],
        "same": True,
    }
    assert (await client.get("/secret", headers=bearer(token))).text == "s3cret"
    other = session_issuer.mint(roles=["Other"])
    assert (await client.get("/secret", headers=bearer(other))).status_code == 403


async def test_no_credentials_get_a_bare_challenge(client: httpx.AsyncClient) -> None:
    for headers in ({}, {"Authorization": "Basic dXNlcjpwYXNz"}, {"Authorization": "Negotiate x"}):
        response = await client.get("/whoami", headers=headers)
        assert response.status_code == 401
        assert response.headers["www-authenticate"] == 'Bearer realm="tokenguard"'
        assert response.json() == {
            "error": "unauthenticated",
            "error_description": "A bearer token is required",
        }


@pytest.mark.parametrize(
    ("headers", "query", "description"),
    [
        ([("authorization", "Bearer")], "", "The bearer token is empty"),
        ([("authorization", "Bearer    ")], "", "The bearer token is empty"),
        (
            [("authorization", "Bearer a"), ("authorization", "Bearer b")],
            "",
            "More than one Authorization header",
        ),
        (
            [("authorization", "Bearer a.b.c")],
            "access_token=a.b.c",
            "The token was sent in more than one way",
        ),
        ([], "access_token=a.b.c", "Tokens in the query string are not accepted"),
        (
            [("authorization", "Basic x")],
            "access_token=a.b.c",
            "Tokens in the query string are not accepted",
        ),
        ([], "access_token=a&access_token=b", "The token was sent in more than one way"),
        ([], "access_token=", "The bearer token is empty"),
    ],
)
async def test_malformed_requests_get_400(
    client: httpx.AsyncClient, headers: list[tuple[str, str]], query: str, description: str
) -> None:
    response = await client.get(f"/whoami?{query}", headers=headers)
    assert response.status_code == 400
    assert response.json() == {"error": "invalid_request", "error_description": description}
    assert response.headers["www-authenticate"] == (
        f'Bearer realm="tokenguard", error="invalid_request", error_description="{description}"'
    )


async def test_unrelated_query_strings_pass(
    client: httpx.AsyncClient, session_issuer: LocalIssuer
) -> None:
    token = session_issuer.mint(roles=ROLE)
    response = await client.get("/whoami?x=access_tokenish", headers=bearer(token))
    assert response.status_code == 200


async def test_scheme_is_case_insensitive(
    client: httpx.AsyncClient, session_issuer: LocalIssuer
) -> None:
    token = session_issuer.mint(roles=ROLE)
    for scheme in ("bearer", "BEARER", "BeArEr"):
        response = await client.get("/whoami", headers={"Authorization": f"{scheme} {token}"})
        assert response.status_code == 200


@pytest.mark.parametrize(
    ("make", "description"),
    [
        (lambda i: i.forge(), "The token signature is invalid"),
        (lambda i: i.mint(lifetime=-3600), "The token is expired"),
        (lambda i: i.mint("https://storage.azure.com/"), "The token audience is not accepted"),
        (lambda i: "not-a-token", "The token is malformed"),
        (lambda i: "x" * 17_000, "The token is too large"),
    ],
)
async def test_invalid_tokens_get_401_invalid_token(
    client: httpx.AsyncClient, session_issuer: LocalIssuer, make: Any, description: str
) -> None:
    token = make(session_issuer)
    response = await client.get("/whoami", headers=bearer(token))
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == (
        f'Bearer realm="tokenguard", error="invalid_token", error_description="{description}"'
    )
    assert response.json() == {"error": "invalid_token", "error_description": description}
    assert token[:40] not in response.text


async def test_oversize_authorization_header_is_refused_early(client: httpx.AsyncClient) -> None:
    response = await client.get("/whoami", headers={"Authorization": "Bearer " + "a" * 1_000_000})
    assert response.status_code == 401
    assert "too large" in response.headers["www-authenticate"]


async def test_excluded_paths_skip_authentication(client: httpx.AsyncClient) -> None:
    assert (await client.get("/healthz")).text == "ok"
    assert (await client.get("/public/info")).text == "info"
    assert (await client.get("/whoami")).status_code == 401


async def test_anonymous_mode(validator: TokenValidator, session_issuer: LocalIssuer) -> None:
    app = build(validator, allow_anonymous=True)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        anonymous = await c.get("/whoami")
        assert anonymous.json()["authenticated"] is False and anonymous.json()["kind"] is None
        assert (await c.get("/whoami", headers=bearer(session_issuer.forge()))).status_code == 401
        assert (await c.get("/whoami", headers=bearer(session_issuer.mint(roles=ROLE)))).json()[
            "authenticated"
        ]


async def test_middleware_requirement_and_challenge_params(
    validator: TokenValidator, session_issuer: LocalIssuer
) -> None:
    app = build(
        validator,
        require=Requirement(any_role=["Key Vault Secrets User", "Key Vault Secrets Officer"]),
        realm=None,
        challenge_params={"authorization": "https://login.example/tid", "resource": VAULT},
    )
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        missing = await c.get("/whoami")
        assert missing.headers["www-authenticate"] == (
            f'Bearer authorization="https://login.example/tid", resource="{VAULT}"'
        )
        denied = await c.get("/whoami", headers=bearer(session_issuer.mint(roles=["Other"])))
        assert denied.status_code == 403
        assert denied.json()["error"] == "insufficient_scope"
        assert 'error="insufficient_scope"' in denied.headers["www-authenticate"]
        # One of two roles would do, and their names hold spaces: no scope= to mislead.
        assert "scope=" not in denied.headers["www-authenticate"]
        ok = await c.get(
            "/whoami", headers=bearer(session_issuer.mint(roles=["Key Vault Secrets User"]))
        )
        assert ok.status_code == 200


async def test_keys_unavailable_gives_503_with_retry_after(session_issuer: LocalIssuer) -> None:
    server = SwitchableIssuer(session_issuer)
    server.override = lambda request: httpx.Response(503)
    validator = TokenValidator([session_issuer.issuer_config(VAULT)], http_client=server.client())
    app = build(validator)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        response = await c.get("/whoami", headers=bearer(session_issuer.mint()))
    assert response.status_code == 503
    assert response.headers["retry-after"] == "5"
    assert "www-authenticate" not in response.headers
    assert response.json()["error"] == "temporarily_unavailable"


async def test_custom_error_renderer(
    validator: TokenValidator, session_issuer: LocalIssuer
) -> None:
    seen: list[TokenGuardError] = []

    async def render(
        conn: HTTPConnection, exc: TokenGuardError, headers: dict[str, str]
    ) -> Response:
        seen.append(exc)
        return JSONResponse({"oops": exc.reason}, status_code=exc.status_code, headers=headers)

    def render_sync(
        conn: HTTPConnection, exc: TokenGuardError, headers: dict[str, str]
    ) -> Response:
        return PlainTextResponse(exc.reason, status_code=exc.status_code, headers=headers)

    for renderer in (render, render_sync):
        app = build(validator, on_error=renderer)
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://t"
        ) as c:
            response = await c.get("/whoami", headers=bearer(session_issuer.forge()))
        assert response.status_code == 401
        assert "bad_signature" in response.text
        assert 'error="invalid_token"' in response.headers["www-authenticate"]
    assert seen[0].reason == "bad_signature"


def test_websocket_accepted_with_token(
    validator: TokenValidator, session_issuer: LocalIssuer
) -> None:
    with (
        TestClient(build(validator)) as client,
        client.websocket_connect("/ws", headers=bearer(session_issuer.mint(roles=ROLE))) as ws,
    ):
        assert ws.receive_text() == "managed_identity"


def test_websocket_refused_before_accept(
    validator: TokenValidator, session_issuer: LocalIssuer
) -> None:
    with TestClient(build(validator)) as client:
        for headers in ({}, bearer(session_issuer.forge())):
            with (
                pytest.raises(WebSocketDisconnect) as info,
                client.websocket_connect("/ws", headers=headers),
            ):
                pass  # pragma: no cover - the connection never opens
            # TestClient offers the websocket.http.response extension: a real 401 comes back
            assert getattr(info.value, "status_code", None) == 401


async def ws_call(app: ASGIApp, scope: Scope) -> list[Message]:
    """Open a websocket through ``app``; return what it sent back."""
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "websocket.connect"}

    async def send(message: Message) -> None:
        sent.append(message)

    await app(scope, receive, send)
    return sent


async def test_websocket_closed_with_policy_violation_without_denial_extension(
    validator: TokenValidator,
) -> None:
    middleware = TokenGuardMiddleware(build(validator), validator=validator)
    scope = {"type": "websocket", "path": "/ws", "headers": [], "query_string": b""}
    sent = await ws_call(middleware, scope)
    assert sent == [
        {"type": "websocket.close", "code": 1008, "reason": "A bearer token is required"}
    ]


async def test_websocket_denial_response_when_the_server_supports_it(
    validator: TokenValidator,
) -> None:
    app = build(validator)
    scope = {
        "type": "websocket",
        "path": "/ws",
        "raw_path": b"/ws",
        "root_path": "",
        "scheme": "ws",
        "query_string": b"",
        "headers": [],
        "extensions": {"websocket.http.response": {}},
        "asgi": {"version": "3.0"},
        "server": ("t", 80),
        "client": ("c", 1),
        "subprotocols": [],
    }
    sent = await ws_call(app, scope)
    assert sent[0]["type"] == "websocket.http.response.start"
    assert sent[0]["status"] == 401


async def test_keys_unavailable_closes_websocket_with_try_again_later(
    session_issuer: LocalIssuer,
) -> None:
    server = SwitchableIssuer(session_issuer)
    server.override = lambda request: httpx.Response(503)
    validator = TokenValidator([session_issuer.issuer_config(VAULT)], http_client=server.client())
    middleware = TokenGuardMiddleware(build(validator), validator=validator)
    scope = {
        "type": "websocket",
        "path": "/ws",
        "headers": [(b"authorization", b"Bearer " + session_issuer.mint().encode())],
        "query_string": b"",
    }
    sent = await ws_call(middleware, scope)
    assert sent == [
        {
            "type": "websocket.close",
            "code": 1013,
            "reason": "The token signing keys are unavailable",
        }
    ]


@pytest.mark.parametrize("enabled", [True, False])
def test_lifespan_warms_keys_and_closes_the_validator(
    session_issuer: LocalIssuer, monkeypatch: pytest.MonkeyPatch, enabled: bool
) -> None:
    server = SwitchableIssuer(session_issuer)
    validator = TokenValidator([session_issuer.issuer_config(VAULT)], http_client=server.client())
    closed = closing_spy(validator, monkeypatch)
    with TestClient(build(validator, warm_up=enabled, close_validator=enabled)):
        assert validator.is_ready() is enabled
        assert server.count("/keys") == (1 if enabled else 0)
        assert closed == []
    assert closed == ([True] if enabled else [])


def test_lifespan_start_survives_an_issuer_outage(
    session_issuer: LocalIssuer, caplog: pytest.LogCaptureFixture
) -> None:
    server = SwitchableIssuer(session_issuer)
    server.override = lambda request: httpx.Response(500)
    validator = TokenValidator([session_issuer.issuer_config(VAULT)], http_client=server.client())
    with (
        caplog.at_level(logging.WARNING, logger="tokenguard"),
        TestClient(build(validator)) as client,
    ):
        assert not validator.is_ready()
        assert client.get("/healthz").status_code == 401  # not excluded in this app
    assert "keys could not be loaded at startup" in caplog.text


async def test_other_scope_types_pass_through(validator: TokenValidator) -> None:
    calls: list[str] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        calls.append(scope["type"])

    middleware = TokenGuardMiddleware(app, validator=validator, warm_up=False)
    await middleware({"type": "custom"}, None, None)  # type: ignore[arg-type]
    assert calls == ["custom"]


async def test_request_rejections_are_logged(
    client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="tokenguard"):
        await client.get(
            "/whoami", headers=[("authorization", "Bearer a"), ("authorization", "Bearer b")]
        )
    record = next(r for r in caplog.records if r.getMessage().startswith("request rejected"))
    assert record.reason == "multiple_authorization"  # type: ignore[attr-defined]


async def test_cached_identity_is_reused(
    validator: TokenValidator, session_issuer: LocalIssuer
) -> None:
    seen: list[Identity] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        seen.append(scope["tokenguard.identity"])
        await PlainTextResponse("ok")(scope, receive, send)

    middleware = TokenGuardMiddleware(app, validator=validator)
    token = session_issuer.mint(roles=ROLE)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=middleware), base_url="http://t"
    ) as c:
        for _ in range(3):
            assert (await c.get("/", headers=bearer(token))).status_code == 200
    assert seen[0] is seen[1] is seen[2]
    assert (validator.cache.misses, validator.cache.hits) == (1, 2)


async def test_token_just_over_the_limit_is_too_large(client: httpx.AsyncClient) -> None:
    # Under the header limit (token limit + scheme + slack) but over the token limit.
    token = "a." * 8 + "a" * (16 * 1024 - 10)
    response = await client.get("/whoami", headers=bearer(token))
    assert response.status_code == 401
    assert "The token is too large" in response.headers["www-authenticate"]


# -- the cache-hit path ------------------------------------------------------------
# A request whose exact token is cached takes a shorter path through __call__. Each
# test below caches the token first, then checks that path keeps the general rules;
# ``general_calls`` counts the requests that took the general path instead.


@pytest.fixture
def general_calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    calls: list[str] = []
    real = TokenGuardMiddleware._general

    async def spy(self: TokenGuardMiddleware, scope: Scope, receive: Receive, send: Send) -> None:
        calls.append(scope["path"])
        await real(self, scope, receive, send)

    monkeypatch.setattr(TokenGuardMiddleware, "_general", spy)
    return calls


async def cached_client(
    validator: TokenValidator, token: str, **options: Any
) -> AsyncIterator[httpx.AsyncClient]:
    app = build(validator, **options)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        assert (await c.get("/whoami", headers=bearer(token))).status_code == 200
        assert validator.cache.index.get(token.encode()[-INDEX_BYTES:]) is not None
        yield c


@pytest.mark.parametrize(
    ("headers", "query", "status", "short"),
    [
        ([("authorization", "Bearer {t}")], "", 200, True),
        ([("authorization", "bearer {t}")], "", 200, False),  # other spellings
        ([("authorization", "Bearer  {t}")], "", 200, False),
        ([("authorization", "Basic  {t}")], "", 401, False),  # same length and tail
        ([("authorization", "Bearer {t}"), ("authorization", "Bearer {t}")], "", 400, False),
        ([("authorization", "Bearer {t}")], "access_token={t}", 400, False),
        ([("authorization", "Bearer {t}")], "access_token=", 400, False),
        # Any query naming access_token goes the general way, which tells them apart.
        ([("authorization", "Bearer {t}")], "x=access_tokenish", 200, False),
        ([("authorization", "Bearer {t}")], "x=1", 200, True),
        ([("authorization", "Bearer {t}x")], "", 401, False),
        ([("authorization", "Bearer x{t}")], "", 401, False),  # same tail, other token
    ],
)
async def test_cached_token_follows_the_general_rules(
    validator: TokenValidator,
    session_issuer: LocalIssuer,
    general_calls: list[str],
    headers: list[tuple[str, str]],
    query: str,
    status: int,
    short: bool,
) -> None:
    token = session_issuer.mint(roles=ROLE)
    async for c in cached_client(validator, token):
        filled = [(k, v.format(t=token)) for k, v in headers]
        response = await c.get(f"/whoami?{query.format(t=token)}", headers=filled)
        assert response.status_code == status
    assert len(general_calls) == (1 if short else 2)  # the first request cached the token


async def test_cached_token_keeps_its_time_window(
    session_issuer: LocalIssuer, general_calls: list[str]
) -> None:
    clock = FakeClock(session_issuer.clock())
    validator = session_issuer.validator(VAULT, clock=clock)
    token = session_issuer.mint(roles=ROLE, lifetime=600)
    async for c in cached_client(validator, token):
        clock.advance(-61)  # before nbf - the default leeway of 60 s
        early = await c.get("/whoami", headers=bearer(token))
        assert early.status_code == 401
        assert "not valid yet" in early.headers["www-authenticate"]
        clock.advance(61 + 600 + 60 - 1)  # just inside exp + leeway
        assert (await c.get("/whoami", headers=bearer(token))).status_code == 200
        clock.advance(1)
        late = await c.get("/whoami", headers=bearer(token))
        assert late.status_code == 401
        assert "expired" in late.headers["www-authenticate"]
    assert len(general_calls) == 3  # the first, the early and the late request


async def test_cached_token_dies_with_its_key() -> None:
    issuer = LocalIssuer()
    monotonic = FakeClock()
    validator = issuer.validator(VAULT, monotonic=monotonic)
    token = issuer.mint(roles=ROLE)
    async for c in cached_client(validator, token):
        old = issuer.signing_kid
        issuer.rotate()
        issuer.retire(old)
        monotonic.advance(3_700)  # past the JWKS lifetime: the next load refreshes
        await validator.warm_up()
        response = await c.get("/whoami", headers=bearer(token))
        assert response.status_code == 401
        assert (await c.get("/whoami", headers=bearer(issuer.mint(roles=ROLE)))).status_code == 200
    await validator.aclose()


async def test_cached_token_meets_the_requirement(
    validator: TokenValidator, session_issuer: LocalIssuer, general_calls: list[str]
) -> None:
    reader = session_issuer.mint(roles=["Reader"])
    other = session_issuer.mint(roles=["Other"])
    async for c in cached_client(validator, reader, require=Requirement(roles=["Reader"])):
        assert (await c.get("/whoami", headers=bearer(reader))).status_code == 200
        for _ in range(2):  # verified, then cached: refused both times
            assert (await c.get("/whoami", headers=bearer(other))).status_code == 403
    assert len(general_calls) == 2  # the first request of each token
    middleware = TokenGuardMiddleware(PlainTextResponse("ok"), validator=validator)
    assert middleware.require is None
    with pytest.raises(AttributeError, match="read-only"):
        middleware.require = Requirement(roles=["Admin"])  # options are fixed once built
    assert middleware.require is None


async def test_cached_token_tells_the_observer_and_keeps_the_challenge(
    session_issuer: LocalIssuer, general_calls: list[str]
) -> None:
    observer = RecordingObserver()
    validator = session_issuer.validator(VAULT, observer=observer)
    reader = session_issuer.mint(roles=["Reader"])
    other = session_issuer.mint(roles=["Other"])
    options = {"require": Requirement(roles=["Reader"]), "challenge_params": {"resource": VAULT}}
    async for c in cached_client(validator, reader, **options):
        assert (await c.get("/whoami", headers=bearer(reader))).status_code == 200
        for _ in range(2):
            denied = await c.get("/whoami", headers=bearer(other))
            assert denied.status_code == 403
            assert f'resource="{VAULT}"' in denied.headers["www-authenticate"]
    cached = [(outcome, cached) for outcome, _, _, cached in observer.validations]
    assert cached == [("valid", False), ("valid", True), ("valid", False), ("valid", True)]
    assert len(general_calls) == 2


async def test_cached_requests_share_read_only_credentials(
    validator: TokenValidator, session_issuer: LocalIssuer, general_calls: list[str]
) -> None:
    seen: list[Any] = []

    async def endpoint(request: Request) -> PlainTextResponse:
        seen.append((request.user, request.auth))
        request.auth.scopes.append("Admin")  # changes a copy only
        return PlainTextResponse(",".join(request.auth.scopes))

    app = Starlette(
        routes=[Route("/", endpoint)],
        middleware=[Middleware(TokenGuardMiddleware, validator=validator)],
    )
    token = session_issuer.mint(roles=["Reader"])
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        bodies = [(await c.get("/", headers=bearer(token))).text for _ in range(3)]
    assert bodies == ["Reader"] * 3
    assert seen[1][0] is seen[2][0] and seen[1][1] is seen[2][1]
    assert general_calls == ["/"]  # the second and third took the short path


# -- read when used; every refusal logged; request.user everywhere ----------------------


async def test_observer_and_clock_set_after_the_app_was_built(
    session_issuer: LocalIssuer, general_calls: list[str]
) -> None:
    validator = session_issuer.validator(VAULT)
    token = session_issuer.mint(lifetime=600, roles=["Reader"])
    app = build(validator)  # observer and clock changed only after this
    recorder = RecordingObserver()
    validator.observer = recorder
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        for _ in range(4):
            assert (await c.get("/whoami", headers=bearer(token))).status_code == 200
        assert [cached for *_, cached in recorder.validations] == [False, True, True, True]
        clock = FakeClock(session_issuer.clock() + 600 + 60)  # past exp + leeway
        validator.clock = clock
        late = await c.get("/whoami", headers=bearer(token))
    assert late.status_code == 401
    assert "expired" in late.headers["www-authenticate"]
    assert len(general_calls) == 2  # the first and the late request


async def test_every_refusal_is_logged_once_with_its_facts_in_the_text(
    client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="tokenguard")
    await client.get("/whoami", headers={"Authorization": "Bearer " + "a" * 1_000_000})
    await client.get("/whoami")
    lines = [r.getMessage() for r in caplog.records if "rejected" in r.getMessage()]
    assert lines == [
        "request rejected: reason=token_too_large status=401",
        "request rejected: reason=missing_token status=401",
    ]


async def test_refused_caller_is_named_in_the_log(
    validator: TokenValidator, session_issuer: LocalIssuer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="tokenguard")
    token = session_issuer.mint(roles=["Other"], object_id="oid-7", app_id="app-7")
    app = build(validator, require=Requirement(roles=["Reader"]))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        for _ in range(2):  # verified, then cached: both refusals logged
            assert (await c.get("/whoami", headers=bearer(token))).status_code == 403
    lines = [r.getMessage() for r in caplog.records if "rejected" in r.getMessage()]
    assert len(lines) == 2
    for line in lines:
        assert line.startswith("request rejected: reason=missing_role status=403 caller=oid-7")
        assert "app_id=app-7" in line
    for part in token.split("."):
        assert part not in caplog.text


async def test_excluded_path_has_an_unauthenticated_user(validator: TokenValidator) -> None:
    async def show(request: Request) -> JSONResponse:
        return JSONResponse({"authenticated": request.user.is_authenticated})

    app = Starlette(
        routes=[Route("/open", show)],
        middleware=[Middleware(TokenGuardMiddleware, validator=validator, exclude_paths=["/open"])],
    )
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        answer = await c.get("/open")
    assert answer.status_code == 200
    assert answer.json() == {"authenticated": False}


async def test_cache_hit_adds_only_starlettes_keys_and_the_identity(
    validator: TokenValidator, session_issuer: LocalIssuer
) -> None:
    # Each scope key costs every request (a fourth one pushed the benchmark's scope dict
    # past a resize); which validator verified the caller rides on request.user.
    added: list[set[str]] = []
    before = {"type", "path", "headers", "query_string", "method", "scheme", "server"}

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        added.append(set(scope) - before)
        await PlainTextResponse("ok")(scope, receive, send)

    token = session_issuer.mint(roles=["Reader"])
    middleware = TokenGuardMiddleware(app, validator=validator)
    messages: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": b""}

    async def send(message: Message) -> None:
        messages.append(message)

    for _ in range(2):  # verified, then a cache hit
        scope: Scope = {
            "type": "http",
            "path": "/",
            "headers": [(b"authorization", f"Bearer {token}".encode())],
            "query_string": b"",
            "method": "GET",
            "scheme": "http",
            "server": ("t", 80),
        }
        messages.clear()
        await middleware(scope, receive, send)
        assert messages[0]["status"] == 200
        assert scope["user"].verified_by is validator
    assert added == [{"tokenguard.identity", "user", "auth"}] * 2


@pytest.mark.parametrize(
    ("paths", "error"),
    [
        ("/healthz", TypeError),  # a lone str would be a set of its characters
        (["healthz"], ValueError),  # route paths start with "/": it could never match
        ([""], ValueError),
    ],
)
def test_exclude_paths_are_checked_when_built(
    validator: TokenValidator, paths: Any, error: type[Exception]
) -> None:
    with pytest.raises(error, match="exclude_paths"):
        TokenGuardMiddleware(build(validator), validator=validator, exclude_paths=paths)
