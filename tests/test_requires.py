"""``tokenguard.requires`` beside Starlette's ``requires``: the cases Starlette's own tests
cover (sync and async endpoints, websockets, ``HTTPEndpoint`` methods, a missing
``request`` argument, the request passed as a keyword), run through both decorators
behind a real ``TokenGuardMiddleware``; then tokenguard's RFC 6750 answers and argument
checks."""

from __future__ import annotations

import asyncio
import functools
import threading
from collections.abc import Awaitable, Callable, Iterator
from typing import TYPE_CHECKING, Any

import pytest
from starlette import authentication as starlette_authentication
from starlette.applications import Starlette
from starlette.endpoints import HTTPEndpoint
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.testclient import TestClient
from starlette.websockets import WebSocket, WebSocketDisconnect

import tokenguard
from tokenguard import Requirement, TokenGuardMiddleware
from tokenguard.testing import LocalIssuer

from .conftest import VAULT
from .helpers import bearer

Decorator = Callable[[str], Callable[[Callable[..., Any]], Callable[..., Any]]]

LIBRARIES: dict[str, Decorator] = {
    "starlette": starlette_authentication.requires,
    "tokenguard": tokenguard.requires,
}
PERMISSION = "Secrets.Read"


class Threads:
    """Where endpoints ran: thread ids, and whether an event loop ran on that thread."""

    def __init__(self) -> None:
        self.seen: dict[str, tuple[int, bool]] = {}

    def record(self, name: str) -> None:
        try:
            asyncio.get_running_loop()
            on_loop = True
        except RuntimeError:
            on_loop = False
        self.seen[name] = (threading.get_ident(), on_loop)


def who(conn: Request | WebSocket) -> dict[str, Any]:
    return {"authenticated": conn.user.is_authenticated, "user": conn.user.display_name}


def inject(
    endpoint: Callable[..., Awaitable[Response]],
) -> Callable[[Request], Awaitable[Response]]:
    """A decorator above ``requires`` that passes the request as a keyword (Starlette's
    ``async_inject_decorator``)."""

    async def app(request: Request) -> Response:
        return await endpoint(request=request, additional="payload")

    return app


def build(requires: Decorator, issuer: LocalIssuer, threads: Threads) -> Starlette:
    """An app whose every route is guarded by ``requires(PERMISSION)``."""
    return Starlette(
        routes=[*http_routes(requires, threads), *websocket_routes(requires)],
        middleware=[
            Middleware(
                TokenGuardMiddleware,
                validator=issuer.validator(VAULT),
                allow_anonymous=True,
                challenge_params={"resource": VAULT},
            )
        ],
    )


def http_routes(requires: Decorator, threads: Threads) -> list[Route]:
    """Async and sync endpoints, an ``HTTPEndpoint``'s methods, and an endpoint given the
    request as a keyword; three record in ``threads`` where they ran."""

    @requires(PERMISSION)
    async def dashboard(request: Request) -> JSONResponse:
        threads.record("async")
        return JSONResponse(who(request))

    @requires(PERMISSION)
    def dashboard_sync(request: Request) -> JSONResponse:
        threads.record("sync")
        return JSONResponse(who(request))

    class Dashboard(HTTPEndpoint):
        @requires(PERMISSION)
        def get(self, request: Request) -> JSONResponse:
            threads.record("method sync")
            return JSONResponse(who(request))

        @requires(PERMISSION)
        async def post(self, request: Request) -> JSONResponse:
            return JSONResponse(who(request))

    @inject
    @requires(PERMISSION)
    async def decorated(request: Request, additional: str) -> JSONResponse:
        return JSONResponse({**who(request), "additional": additional})

    return [
        Route("/dashboard", dashboard),
        Route("/dashboard/sync", dashboard_sync),
        Route("/dashboard/class", Dashboard),
        Route("/dashboard/decorated", decorated),
    ]


def websocket_routes(requires: Decorator) -> list[WebSocketRoute]:
    """A websocket endpoint, and one given the websocket as a keyword."""

    @requires(PERMISSION)
    async def websocket_endpoint(websocket: WebSocket) -> None:
        await websocket.accept()
        await websocket.send_json(who(websocket))
        await websocket.close()

    async def inject_websocket(websocket: WebSocket) -> None:
        await websocket_decorated(websocket=websocket, additional="payload")

    @requires(PERMISSION)
    async def websocket_decorated(websocket: WebSocket, additional: str) -> None:
        await websocket.accept()
        await websocket.send_json({**who(websocket), "additional": additional})
        await websocket.close()

    return [
        WebSocketRoute("/ws", websocket_endpoint),
        WebSocketRoute("/ws/decorated", inject_websocket),
    ]


@pytest.fixture(params=sorted(LIBRARIES))
def library(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


@pytest.fixture
def threads() -> Threads:
    return Threads()


@pytest.fixture
def client(library: str, session_issuer: LocalIssuer, threads: Threads) -> Iterator[TestClient]:
    with TestClient(build(LIBRARIES[library], session_issuer, threads)) as test_client:
        yield test_client


@pytest.fixture
def reader(session_issuer: LocalIssuer) -> dict[str, str]:
    return bearer(session_issuer.mint(roles=[PERMISSION]))


@pytest.fixture
def other(session_issuer: LocalIssuer) -> dict[str, str]:
    return bearer(session_issuer.mint(roles=["Other"]))


def refused(client: TestClient, path: str, headers: dict[str, str]) -> WebSocketDisconnect:
    """How the server closed a websocket it refused (before accepting)."""
    with (
        pytest.raises(WebSocketDisconnect) as info,
        client.websocket_connect(path, headers=headers),
    ):
        pass  # pragma: no cover - the connection is refused on entry
    return info.value


VM = "tokenguard-vm"  # display name of LocalIssuer's managed identities
ROUTES = ["/dashboard", "/dashboard/sync", "/dashboard/class", "/dashboard/decorated"]


# -- what both libraries do alike -----------------------------------------------------


@pytest.mark.parametrize("path", ROUTES)
def test_a_caller_with_the_permission_reaches_the_endpoint(
    client: TestClient, reader: dict[str, str], path: str
) -> None:
    response = client.get(path, headers=reader)
    assert response.status_code == 200
    expected = {"authenticated": True, "user": VM}
    if path.endswith("decorated"):
        expected["additional"] = "payload"  # the request came as a keyword
    assert response.json() == expected


def test_an_async_method_of_an_http_endpoint(client: TestClient, reader: dict[str, str]) -> None:
    assert client.post("/dashboard/class", headers=reader).json()["user"] == VM
    assert client.post("/dashboard/class").status_code in (401, 403)


def test_a_delegated_scope_counts_as_a_permission(
    client: TestClient, session_issuer: LocalIssuer
) -> None:
    user = bearer(session_issuer.mint(kind="user", scopes=[PERMISSION]))
    response = client.get("/dashboard", headers=user)
    assert response.status_code == 200
    assert response.json()["authenticated"] is True


@pytest.mark.parametrize("path", ROUTES)
def test_callers_without_the_permission_are_refused(
    client: TestClient, other: dict[str, str], path: str, threads: Threads
) -> None:
    assert client.get(path, headers=other).status_code == 403
    assert client.get(path).status_code in (401, 403)  # Starlette: 403; tokenguard: 401
    assert threads.seen == {}, "the endpoint ran for a refused caller"


def test_sync_endpoints_run_in_the_threadpool(
    client: TestClient, reader: dict[str, str], threads: Threads
) -> None:
    for path in ("/dashboard", "/dashboard/sync", "/dashboard/class"):
        assert client.get(path, headers=reader).status_code == 200
    loop_thread, on_loop = threads.seen["async"]
    assert on_loop
    for name in ("sync", "method sync"):
        thread, on_loop = threads.seen[name]
        assert not on_loop, f"the {name} endpoint ran on the event loop"
        assert thread != loop_thread


def test_the_decorated_sync_endpoint_stays_sync(library: str) -> None:
    @LIBRARIES[library](PERMISSION)
    def endpoint(request: Request) -> Response:
        raise AssertionError("not called")  # pragma: no cover

    assert not asyncio.iscoroutinefunction(endpoint)
    assert endpoint.__name__ == "endpoint"


def test_a_partial_of_an_async_endpoint_gets_the_async_wrapper(
    library: str, session_issuer: LocalIssuer
) -> None:
    async def greet(greeting: str, request: Request) -> JSONResponse:
        return JSONResponse({"greeting": greeting})

    endpoint = LIBRARIES[library](PERMISSION)(functools.partial(greet, "hello"))
    assert asyncio.iscoroutinefunction(endpoint)
    app = Starlette(
        routes=[Route("/", endpoint)],
        middleware=[Middleware(TokenGuardMiddleware, validator=session_issuer.validator(VAULT))],
    )
    with TestClient(app) as test_client:
        token = bearer(session_issuer.mint(roles=[PERMISSION]))
        assert test_client.get("/", headers=token).json() == {"greeting": "hello"}


@pytest.mark.parametrize("path", ["/ws", "/ws/decorated"])
def test_a_websocket_with_the_permission_is_accepted(
    client: TestClient, reader: dict[str, str], path: str
) -> None:
    with client.websocket_connect(path, headers=reader) as websocket:
        data = websocket.receive_json()
    assert data["authenticated"] is True
    assert data["user"] == VM
    assert data.get("additional", "payload") == "payload"


@pytest.mark.parametrize("path", ["/ws", "/ws/decorated"])
def test_a_websocket_without_the_permission_is_closed_before_accept(
    client: TestClient, library: str, other: dict[str, str], path: str
) -> None:
    code = 1008 if library == "tokenguard" else 1000
    for headers in ({}, other):
        assert refused(client, path, headers).code == code


def test_an_endpoint_without_a_request_argument_is_refused_at_decoration(library: str) -> None:
    decorator = LIBRARIES[library](PERMISSION)

    def foo() -> None:
        pass  # pragma: no cover

    with pytest.raises(Exception, match='No "request" or "websocket" argument on function'):
        decorator(foo)


def test_the_request_argument_is_found_by_name_not_position(
    library: str, session_issuer: LocalIssuer
) -> None:
    @LIBRARIES[library](PERMISSION)
    async def endpoint(first: str, request: Request) -> JSONResponse:
        return JSONResponse({"first": first, **who(request)})

    async def route(request: Request) -> Response:
        response: Response = await endpoint("one", request)
        return response

    app = Starlette(
        routes=[Route("/", route)],
        middleware=[Middleware(TokenGuardMiddleware, validator=session_issuer.validator(VAULT))],
    )
    with TestClient(app) as test_client:
        token = bearer(session_issuer.mint(roles=[PERMISSION]))
        assert test_client.get("/", headers=token).json()["first"] == "one"
        assert (
            test_client.get("/", headers=bearer(session_issuer.mint(roles=["Other"]))).status_code
            == 403
        )


# -- tokenguard's answers ---------------------------------------------------------------


@pytest.fixture
def tokenguard_client(session_issuer: LocalIssuer, threads: Threads) -> Iterator[TestClient]:
    with TestClient(build(tokenguard.requires, session_issuer, threads)) as test_client:
        yield test_client


@pytest.mark.parametrize("path", ROUTES)
def test_rfc6750_answers(tokenguard_client: TestClient, other: dict[str, str], path: str) -> None:
    anonymous = tokenguard_client.get(path)
    assert anonymous.status_code == 401
    assert anonymous.headers["www-authenticate"] == f'Bearer realm="tokenguard", resource="{VAULT}"'
    assert anonymous.json() == {
        "error": "unauthenticated",
        "error_description": "A bearer token is required",
    }
    denied = tokenguard_client.get(path, headers=other)
    assert denied.status_code == 403
    assert denied.headers["www-authenticate"] == (
        f'Bearer realm="tokenguard", resource="{VAULT}", error="insufficient_scope", '
        f'error_description="The caller lacks a required role", scope="{PERMISSION}"'
    )
    assert denied.json()["error"] == "insufficient_scope"


def test_a_user_without_the_permission_lacks_a_scope(
    tokenguard_client: TestClient, session_issuer: LocalIssuer
) -> None:
    user = bearer(session_issuer.mint(kind="user", scopes=["Other"]))
    denied = tokenguard_client.get("/dashboard", headers=user)
    assert denied.status_code == 403
    assert (
        'error_description="The caller lacks a required scope"'
        in (denied.headers["www-authenticate"])
    )


def test_websocket_close_reasons(tokenguard_client: TestClient, other: dict[str, str]) -> None:
    reasons = []
    for headers in ({}, other):
        closed = refused(tokenguard_client, "/ws", headers)
        reasons.append((closed.code, closed.reason))
    assert reasons == [
        (1008, "A bearer token is required"),
        (1008, "The caller lacks a required role"),
    ]


def test_a_wrong_connection_type_is_a_type_error() -> None:
    @tokenguard.requires(PERMISSION)
    async def endpoint(request: Request) -> Response:
        raise AssertionError("not called")  # pragma: no cover

    with pytest.raises(TypeError, match="'request' is required to be of type 'Request' not 'str'"):
        asyncio.run(endpoint("not a request"))  # type: ignore[arg-type]


def statuses(
    issuer: LocalIssuer, decorator: Callable[[Callable[..., Any]], Callable[..., Any]], *tokens: str
) -> list[int]:
    """The status a sync endpoint under ``decorator`` answers to each token."""

    @decorator
    def endpoint(request: Request) -> Response:
        return Response("ok")

    app = Starlette(
        routes=[Route("/", endpoint)],
        middleware=[Middleware(TokenGuardMiddleware, validator=issuer.validator(VAULT))],
    )
    with TestClient(app) as test_client:
        return [test_client.get("/", headers=bearer(token)).status_code for token in tokens]


def test_several_positional_permissions_are_all_required(session_issuer: LocalIssuer) -> None:
    mint = session_issuer.mint
    tokens = (mint(roles=["A"]), mint(roles=["B"]), mint(roles=["A", "B"]))
    assert statuses(session_issuer, tokenguard.requires(["A", "B"]), *tokens) == [403, 403, 200]
    assert statuses(session_issuer, tokenguard.requires(("A",)), *tokens) == [200, 403, 200]


def test_positional_permissions_combine_with_keywords(session_issuer: LocalIssuer) -> None:
    mint = session_issuer.mint
    decorator = tokenguard.requires("A", kinds=["managed_identity"])
    tokens = (mint(roles=["A"]), mint(kind="app", roles=["A"]), mint(roles=["B"]))
    assert statuses(session_issuer, decorator, *tokens) == [200, 403, 403]


def test_a_requirement_is_taken_as_is(session_issuer: LocalIssuer) -> None:
    mint = session_issuer.mint
    decorator = tokenguard.requires(Requirement(any_role=["A", "B"]))
    tokens = (mint(roles=["A"]), mint(roles=["B"]), mint(roles=["C"]))
    assert statuses(session_issuer, decorator, *tokens) == [200, 200, 403]


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: tokenguard.requires(123), "not int"),  # type: ignore[arg-type]
        (lambda: tokenguard.requires(b"A"), "not bytes"),  # type: ignore[arg-type]
        (lambda: tokenguard.requires(["A", 1]), "not holding int"),  # type: ignore[list-item]
        (lambda: tokenguard.requires(roles="Admin"), r"roles=\['Admin'\]"),
        (lambda: tokenguard.requires(kinds="app"), r"kinds=\['app'\]"),  # type: ignore[arg-type]
        (lambda: tokenguard.requires(Requirement(), roles=["A"]), "not both"),
        (lambda: tokenguard.requires("A", "B"), "positional"),  # type: ignore[call-arg]
    ],
)
def test_arguments_are_checked_when_decorating(call: Callable[[], object], message: str) -> None:
    with pytest.raises(TypeError, match=message):
        call()


if TYPE_CHECKING:
    # mypy --strict keeps the endpoint's signature through the decorator: these calls
    # would type-check (and the ignores be unused, an error) if it were lost.
    @tokenguard.requires(PERMISSION)
    async def typed(request: Request, count: int) -> Response: ...

    async def _use_typed(request: Request) -> None:
        await typed(request, "three")  # type: ignore[arg-type]
        await typed(request, 3, 4)  # type: ignore[call-arg]
