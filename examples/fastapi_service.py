"""A small FastAPI secrets service protected by tokenguard, with per-route app roles.

Run it against the local identity lab::

    make lab                                   # terminal 1: issuer, IMDS, toy resources
    . .lab/env                                 # terminal 2: LAB_ISSUER, LAB_DISCOVERY_URL...
    .venv/bin/python -m examples.fastapi_service
    # http://127.0.0.1:8000/docs: Authorize signs a lab user in (authorization code + PKCE)

The service is an API of its own, registered in the tenant as ``api://tokenguard-lab-api``
with the app roles ``Secrets.Read`` and ``Secrets.Write`` (``examples/lab/default.toml``).
A caller asks for a token for that resource (IMDS ``resource=api://tokenguard-lab-api``,
SDKs ``api://tokenguard-lab-api/.default``); Entra writes the app roles assigned to the
caller into its ``roles`` claim, and the routes check them. A token without any role is
refused outright (``require_roles_or_scopes``: 401), one lacking a route's role gets 403.

Users call it too: the API exposes the delegated scope ``Secrets.Read``, and ``/docs``
(Swagger UI, served from the ``swagger-ui-py`` package, no CDN) signs a user in with
the authorization code flow and PKCE as the lab's public client ``tokenguard-lab-swagger``.
The issuer's endpoints come from its v2 discovery document at startup; the user's token
carries ``scp`` instead of ``roles``, and the read routes accept either.
This is how *your* API authorizes; Azure's own resources (Key Vault, Storage) get tokens
without roles and look the caller's object id up in their RBAC role assignments instead.

    GET  /healthz           no token
    GET  /readyz            no token; 200 once the issuer's keys are loaded, else 503
    GET  /metrics           no token; Prometheus text format
    GET  /whoami            any valid token carrying an app role or a scope
    GET  /secrets           "Secrets.Read" (app role, or a user's delegated scope)
    GET  /secrets/{name}    "Secrets.Read" (app role, or a user's delegated scope)
    PUT  /secrets/{name}    "Secrets.Write", managed identities only

Configuration (environment): ``TOKENGUARD_ISSUER``, ``TOKENGUARD_DISCOVERY_URL``,
``TOKENGUARD_AUDIENCE``; without them the lab's ``LAB_ISSUER``/``LAB_DISCOVERY_URL``, then
the lab's defaults (tenant of ``examples/lab/default.toml`` on port 8700). For sign-in from
``/docs``: ``TOKENGUARD_SIGNIN_DISCOVERY_URL`` (else ``LAB_DISCOVERY_URL_V2``) and
``TOKENGUARD_SWAGGER_CLIENT_ID`` (else the lab's Swagger client). ``PORT``
(default 8000) is where the service listens, on 127.0.0.1.
"""

import logging
import os
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from typing import Annotated, Any, Final

from fastapi import APIRouter, Body, FastAPI, HTTPException, Security
from pydantic import BaseModel

from examples.lab.runtime import add_swagger_ui
from tokenguard import Identity, Issuer, TokenValidator
from tokenguard.fastapi import (
    OAuth2AuthorizationCode,
    TokenGuard,
    add_error_handler,
    add_openapi_responses,
)
from tokenguard.metrics import PrometheusObserver, metrics_endpoint
from tokenguard.readiness import lifespan, readiness_endpoint

logger = logging.getLogger(__name__)

#: The lab's tenant and base port (``examples/lab/default.toml``, ``make lab``).
LAB_TENANT: Final = "72f988bf-0000-4000-8000-00000000ab1e"
LAB_PORT: Final = 8700
#: The API's Application ID URI (its app registration in the lab's default.toml).
API_AUDIENCE: Final = "api://tokenguard-lab-api"
READ_ROLE: Final = "Secrets.Read"
WRITE_ROLE: Final = "Secrets.Write"
#: The delegated scopes the API exposes to users (its registration's ``scopes``).
SCOPES: Final = {READ_ROLE: "Read the secrets (and list them)"}
#: The lab's public client for Swagger UI (``tokenguard-lab-swagger`` in default.toml).
LAB_SWAGGER_CLIENT: Final = "0d9b6c5e-2f4a-4e1b-9c8d-7a6b5c4d3e2f"


@dataclass(frozen=True, kw_only=True)
class Settings:
    """Which tokens the service accepts."""

    issuer: str
    discovery_url: str
    audience: str
    #: The issuer's v2 discovery document, naming its authorize and token endpoints.
    signin_discovery_url: str | None = None
    #: The public client Swagger UI signs users in as.
    swagger_client_id: str = LAB_SWAGGER_CLIENT

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> "Settings":
        """Read ``TOKENGUARD_*``, falling back to the lab's variables and defaults."""
        tenant = env.get("LAB_TENANT_ID") or LAB_TENANT
        port = env.get("LAB_PORT") or str(LAB_PORT)
        return cls(
            issuer=env.get("TOKENGUARD_ISSUER")
            or env.get("LAB_ISSUER")
            or f"https://sts.windows.net/{tenant}/",
            discovery_url=env.get("TOKENGUARD_DISCOVERY_URL")
            or env.get("LAB_DISCOVERY_URL")
            or f"http://127.0.0.1:{port}/{tenant}/.well-known/openid-configuration",
            audience=env.get("TOKENGUARD_AUDIENCE") or API_AUDIENCE,
            signin_discovery_url=env.get("TOKENGUARD_SIGNIN_DISCOVERY_URL")
            or env.get("LAB_DISCOVERY_URL_V2")
            or f"http://127.0.0.1:{port}/{tenant}/v2.0/.well-known/openid-configuration",
            swagger_client_id=env.get("TOKENGUARD_SWAGGER_CLIENT_ID") or LAB_SWAGGER_CLIENT,
        )

    def validator(self, observer: PrometheusObserver | None = None) -> TokenValidator:
        """A validator trusting this issuer for this audience; tokens without any app
        role (or scope) are refused, as Microsoft.Identity.Web does by default."""
        issuer = Issuer(
            issuer=self.issuer,
            audiences=(self.audience,),
            discovery_url=self.discovery_url,
            require_roles_or_scopes=True,
        )
        return TokenValidator([issuer], observer=observer)


#: The request body of PUT /secrets/{name}: ``{"value": "..."}``.
SecretValue = Annotated[str, Body(embed=True)]


class Secret(BaseModel):
    """A stored secret."""

    name: str
    value: str
    updated_by: str


def create_app(
    settings: Settings | None = None,
    *,
    validator: TokenValidator | None = None,
    observer: PrometheusObserver | None = None,
    oauth2: OAuth2AuthorizationCode | None = None,
) -> FastAPI:
    """The service. Tests pass their own ``validator`` (and its ``observer``).

    ``/docs`` signs users in with ``oauth2`` when given, else with the endpoints of
    ``settings.signin_discovery_url`` read at startup; without either (or when that
    document cannot be read) it asks for a pasted bearer token.
    """
    observer = observer or PrometheusObserver()
    if validator is None:
        settings = settings or Settings.from_env()
        validator = settings.validator(observer)
    observer.watch(validator)
    # The guard finds its validator on app.state (set here and by the lifespan).
    guard = TokenGuard(oauth2=oauth2)
    signin_url = None if settings is None or oauth2 else settings.signin_discovery_url
    app = FastAPI(
        title="tokenguard example: secrets",
        lifespan=_lifespan(validator, guard, signin_url),
        docs_url=None,
        redoc_url=None,
    )
    app.state.tokenguard_validator = validator  # also for servers that skip the lifespan
    add_error_handler(app)
    _add_docs(app, guard, client_id=settings.swagger_client_id if settings else LAB_SWAGGER_CLIENT)
    _add_probes(app, validator, observer)
    app.include_router(_secrets_router(guard))
    add_openapi_responses(app)  # /docs lists each route's 401 and the roles behind its 403
    return app


def _lifespan(
    validator: TokenValidator, guard: TokenGuard, signin_url: str | None
) -> Callable[[FastAPI], AbstractAsyncContextManager[None]]:
    """Find the sign-in endpoints (when ``signin_url`` is given), then run the validator:
    its keys are loaded at startup and it is closed at shutdown."""
    validator_lifespan = lifespan(validator)

    @asynccontextmanager
    async def run(app: FastAPI) -> AsyncIterator[None]:
        if signin_url is not None:
            await _discover_signin(guard, signin_url)
        async with validator_lifespan(app):
            yield

    return run


async def _discover_signin(guard: TokenGuard, discovery_url: str) -> None:
    """Point the guard's OpenAPI description at the issuer's sign-in endpoints."""
    try:
        guard.oauth2 = await OAuth2AuthorizationCode.discover(
            discovery_url, scopes=SCOPES, scope_prefix=API_AUDIENCE + "/", timeout=5.0
        )
    except ValueError as exc:
        logger.warning("/docs asks for a bearer token: no sign-in endpoints (%s)", exc)


def _add_docs(app: FastAPI, guard: TokenGuard, *, client_id: str) -> None:
    """Serve ``/docs``, signing users in as ``client_id`` once the guard knows the
    issuer's endpoints (asked on each page load: the lifespan may find them later)."""

    def init_oauth() -> dict[str, Any] | None:
        return None if guard.oauth2 is None else guard.oauth2.swagger_ui_init_oauth(client_id)

    add_swagger_ui(app, init_oauth=init_oauth)


def _add_probes(app: FastAPI, validator: TokenValidator, observer: PrometheusObserver) -> None:
    """``/healthz``, ``/readyz`` and ``/metrics``: no token, and not in ``/docs``."""

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, bool]:
        return {"ok": True}

    app.add_api_route("/readyz", readiness_endpoint(validator), include_in_schema=False)
    app.add_api_route("/metrics", metrics_endpoint(observer.registry), include_in_schema=False)


def _secrets_router(guard: TokenGuard) -> APIRouter:
    """The API: who the caller is, and the secrets in memory behind the app roles."""
    # No `from __future__ import annotations` in this module: FastAPI reads these aliases.
    Caller = Annotated[Identity, Security(guard.identity)]
    # Managed identities hold the app role, users the delegated scope of the same name.
    Reader = Annotated[Identity, Security(guard.requires(permissions=[READ_ROLE]))]
    Writer = Annotated[
        Identity, Security(guard.requires(roles=[WRITE_ROLE], kinds=["managed_identity"]))
    ]
    store: dict[str, Secret] = {}
    router = APIRouter()

    @router.get("/whoami")
    async def whoami(caller: Caller) -> Identity:
        return caller  # its public fields as JSON, never the token or its claims

    @router.get("/secrets")
    async def list_secrets(caller: Reader) -> list[str]:
        return sorted(store)

    @router.get("/secrets/{name}")
    async def get_secret(name: str, caller: Reader) -> Secret:
        if name not in store:
            raise HTTPException(404, "no such secret")
        return store[name]

    @router.put("/secrets/{name}")
    async def put_secret(name: str, value: SecretValue, caller: Writer) -> Secret:
        store[name] = Secret(name=name, value=value, updated_by=caller.display_name)
        return store[name]

    return router


def main() -> None:
    """Serve on 127.0.0.1:$PORT (default 8000)."""
    import uvicorn

    settings = Settings.from_env()
    print(f"accepting tokens from {settings.issuer} for {settings.audience}")
    print(f"keys from {settings.discovery_url}")
    port = int(os.environ.get("PORT", "8000"))
    uvicorn.run(create_app(settings), host="127.0.0.1", port=port)


if __name__ == "__main__":
    main()
