"""A small FastAPI secrets service protected by tokenguard, with per-route app roles.

Run it against the local identity lab::

    make lab                                   # terminal 1: issuer, IMDS, toy resources
    . .lab/env                                 # terminal 2: LAB_ISSUER, LAB_DISCOVERY_URL...
    .venv/bin/python -m examples.fastapi_service
    # http://127.0.0.1:8000/docs shows the Authorize button and a lock on each route

The service is an API of its own, registered in the tenant as ``api://tokenguard-lab-api``
with the app roles ``Secrets.Read`` and ``Secrets.Write`` (``examples/lab/default.toml``).
A caller asks for a token for that resource (IMDS ``resource=api://tokenguard-lab-api``,
SDKs ``api://tokenguard-lab-api/.default``); Entra writes the app roles assigned to the
caller into its ``roles`` claim, and the routes check them. A token without any role is
refused outright (``require_roles_or_scopes``: 401), one lacking a route's role gets 403.
This is how *your* API authorizes; Azure's own resources (Key Vault, Storage) get tokens
without roles and look the caller's object id up in their RBAC role assignments instead.

    GET  /healthz           no token
    GET  /readyz            no token; 200 once the issuer's keys are loaded, else 503
    GET  /metrics           no token; Prometheus text format
    GET  /whoami            any valid token carrying an app role
    GET  /secrets           "Secrets.Read"
    GET  /secrets/{name}    "Secrets.Read"
    PUT  /secrets/{name}    "Secrets.Write", managed identities only

Configuration (environment): ``TOKENGUARD_ISSUER``, ``TOKENGUARD_DISCOVERY_URL``,
``TOKENGUARD_AUDIENCE``; without them the lab's ``LAB_ISSUER``/``LAB_DISCOVERY_URL``, then
the lab's defaults (tenant of ``examples/lab/default.toml`` on port 8700). ``PORT``
(default 8000) is where the service listens, on 127.0.0.1.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Final

from fastapi import Body, FastAPI, HTTPException, Security
from pydantic import BaseModel

from tokenguard import Identity, Issuer, TokenValidator
from tokenguard.fastapi import TokenGuard, add_error_handler, add_openapi_responses
from tokenguard.metrics import PrometheusObserver, metrics_endpoint
from tokenguard.readiness import lifespan, readiness_endpoint

#: The lab's tenant and base port (``examples/lab/default.toml``, ``make lab``).
LAB_TENANT: Final = "72f988bf-0000-4000-8000-00000000ab1e"
LAB_PORT: Final = 8700
#: The API's Application ID URI (its app registration in the lab's default.toml).
API_AUDIENCE: Final = "api://tokenguard-lab-api"
READ_ROLE: Final = "Secrets.Read"
WRITE_ROLE: Final = "Secrets.Write"


@dataclass(frozen=True, kw_only=True)
class Settings:
    """Which tokens the service accepts."""

    issuer: str
    discovery_url: str
    audience: str

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> Settings:
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


# The guard finds its validator on app.state (create_app puts it there), so these
# dependency aliases can live at module level.
guard = TokenGuard()
Caller = Annotated[Identity, Security(guard.identity)]
Reader = Annotated[Identity, Security(guard.requires(roles=[READ_ROLE]))]
Writer = Annotated[
    Identity, Security(guard.requires(roles=[WRITE_ROLE], kinds=["managed_identity"]))
]

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
) -> FastAPI:
    """The service. Tests pass their own ``validator`` (and its ``observer``)."""
    observer = observer or PrometheusObserver()
    if validator is None:
        validator = (settings or Settings.from_env()).validator(observer)
    observer.watch(validator)
    app = FastAPI(title="tokenguard example: secrets", lifespan=lifespan(validator))
    app.state.tokenguard_validator = validator  # also for servers that skip the lifespan
    add_error_handler(app)
    store: dict[str, Secret] = {}

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, bool]:
        return {"ok": True}

    app.add_api_route("/readyz", readiness_endpoint(validator), include_in_schema=False)
    app.add_api_route("/metrics", metrics_endpoint(observer.registry), include_in_schema=False)

    @app.get("/whoami")
    async def whoami(caller: Caller) -> Identity:
        return caller  # its public fields as JSON, never the token or its claims

    @app.get("/secrets")
    async def list_secrets(caller: Reader) -> list[str]:
        return sorted(store)

    @app.get("/secrets/{name}")
    async def get_secret(name: str, caller: Reader) -> Secret:
        if name not in store:
            raise HTTPException(404, "no such secret")
        return store[name]

    @app.put("/secrets/{name}")
    async def put_secret(name: str, value: SecretValue, caller: Writer) -> Secret:
        store[name] = Secret(name=name, value=value, updated_by=caller.display_name)
        return store[name]

    add_openapi_responses(app)  # /docs lists each route's 401 and the roles behind its 403
    return app


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
