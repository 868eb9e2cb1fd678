"""The Entra-like issuer: discovery documents, JWKS and managed-identity tokens.

Routes (``{tenant}`` is the lab's tenant id or ``common``)::

    GET  /{tenant}/.well-known/openid-configuration        v1 discovery (iss sts.windows.net)
    GET  /{tenant}/v2.0/.well-known/openid-configuration   v2 discovery
    GET  /{tenant}/discovery/keys                          JWKS (v1)
    GET  /{tenant}/discovery/v2.0/keys                     JWKS (v2, entries carry "issuer")
    GET|POST /{tenant}/oauth2/v2.0/authorize               users sign in (code + PKCE)
    POST /{tenant}/oauth2/v2.0/token                       a code for a user's token
    GET  /_lab/keys, POST /_lab/rotate                     admin, loopback + X-Lab-Admin secret
    GET  /_lab/apps, PUT /_lab/apps/{name}                 admin: app registrations
    POST|DELETE /_lab/app-role-assignments                 admin: assign or remove an app role

Managed identities do not request tokens here: the IMDS emulator asks :meth:`LabIssuer.mint` in
process, as real IMDS asks Entra on the VM's behalf. A token carries ``roles`` only when
its resource is a registered API (:mod:`examples.lab.identity.apps`) and the identity holds some
of that API's app roles; tokens for Azure's own resources (Key Vault, Storage) never do:
those services authorize by ``oid`` against their role assignments. Users sign in through
the authorize and token endpoints (:mod:`examples.lab.identity.signin`).
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import math
import secrets
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

import jwt
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tokenguard.testing import generate_key

from .._http import BodyTooLarge, read_body
from .apps import AppDirectory, AppRegistration, AppRoleAssignment
from .keys import KeyRing, b64url
from .signin import SignIn
from .tenant import LabConfig, ManagedIdentity

__all__ = ["ADMIN_HEADER", "IssuedToken", "LabIssuer"]

ADMIN_HEADER: Final = "X-Lab-Admin"
#: Admin requests are small JSON objects; anything longer is refused unread.
_MAX_ADMIN_BODY: Final = 4096
#: Entra's tenant creation time claim; any fixed value will do in the lab.
_TENANT_CREATED: Final = 1_600_000_000


@dataclass(frozen=True)
class IssuedToken:
    """A freshly signed token and what IMDS needs to answer with it."""

    token: str
    claims: dict[str, Any]
    kid: str

    @property
    def expires_on(self) -> int:
        """``exp`` of the token."""
        return int(self.claims["exp"])

    @property
    def not_before(self) -> int:
        """``nbf`` of the token."""
        return int(self.claims["nbf"])


#: Entra writes these claims first, in this order, and every other claim after them by name.
_LEADING_CLAIMS: Final = ("aud", "iss", "iat", "nbf", "exp")


def _entra_order(claims: Mapping[str, Any]) -> dict[str, Any]:
    rest = sorted(name for name in claims if name not in _LEADING_CLAIMS)
    return {name: claims[name] for name in (*_LEADING_CLAIMS, *rest) if name in claims}


def _issuer_v1(tenant: str) -> str:
    return f"https://sts.windows.net/{tenant}/"


def _issuer_v2(tenant: str) -> str:
    return f"https://login.microsoftonline.com/{tenant}/v2.0"


class LabIssuer:
    """Signs managed-identity tokens with the key ring and serves the metadata to verify them.

    ``base_url`` is where the app is served (``http://127.0.0.1:8700``). ``admin_secret``
    enables the admin routes; without it they answer 404.
    """

    def __init__(
        self,
        config: LabConfig,
        keys: KeyRing,
        *,
        base_url: str,
        clock: Callable[[], float] = time.time,
        admin_secret: str | None = None,
    ) -> None:
        self.config = config
        self.keys = keys
        self.base_url = base_url.rstrip("/")
        self.clock = clock
        self.admin_secret = admin_secret
        self.tenant_id = config.tenant_id
        #: App registrations and app-role assignments (the admin API changes them).
        self.apps: AppDirectory = config.app_directory()
        self.hits: Counter[str] = Counter()
        #: The authorize page and the token endpoint (users signing in).
        self.sign_in = SignIn(self)

    # -- URLs and names ---------------------------------------------------------

    @property
    def issuer(self) -> str:
        """The v1 issuer, as managed-identity tokens carry it."""
        return _issuer_v1(self.tenant_id)

    @property
    def authority(self) -> str:
        """The tenant's authority URL (what Key Vault's challenge names)."""
        return f"{self.base_url}/{self.tenant_id}"

    @property
    def discovery_url(self) -> str:
        """The v1 discovery document URL."""
        return f"{self.authority}/.well-known/openid-configuration"

    @property
    def discovery_url_v2(self) -> str:
        """The v2 discovery document URL."""
        return f"{self.authority}/v2.0/.well-known/openid-configuration"

    @property
    def jwks_uri(self) -> str:
        """The v1 JWKS URL."""
        return f"{self.authority}/discovery/keys"

    # -- tokens -----------------------------------------------------------------

    def claims(
        self,
        identity: ManagedIdentity,
        resource: str,
        *,
        issued_at: float | None = None,
        lifetime: int | None = None,
    ) -> dict[str, Any]:
        """Claims of a managed-identity token, in the order Entra writes them.

        v1 unless ``resource`` is a registered API that accepts v2 tokens; ``roles`` only
        for a registered API, holding the app roles assigned to ``identity``.
        """
        app = self.apps.for_resource(resource)
        v2 = app is not None and app.token_version == 2
        own: dict[str, Any] = {
            "idtyp": "app",
            "oid": identity.object_id,
            "sub": identity.object_id,
            "xms_mirid": identity.resource_id,
            "xms_tcdt": _TENANT_CREATED,
        }
        if not v2:
            own["idp"] = self.issuer
        roles = [] if app is None else self.apps.roles_of(identity.object_id, app)
        if roles:
            own["roles"] = roles
        return self.access_claims(
            # v2: the API's client id, whichever of its names was requested
            app.app_id if v2 and app is not None else resource,
            v2=v2,
            client=identity.client_id,
            client_auth="2",
            lifetime=self.config.issuer.token_lifetime if lifetime is None else lifetime,
            issued_at=issued_at,
            claims=own,
        )

    def access_claims(
        self,
        audience: str,
        *,
        v2: bool,
        client: str,
        client_auth: str,
        lifetime: int,
        issued_at: float | None = None,
        claims: Mapping[str, Any],
    ) -> dict[str, Any]:
        """An access token's claims in Entra's order: what every token carries (audience,
        issuer, times, ``tid``, ``ver``, unique ids), the ``client`` that asked for it as
        the token version names it (v2 ``azp``, v1 ``appid``) with ``client_auth`` (how
        it authenticated: ``"0"`` a public client, ``"2"`` a certificate or managed
        identity), and the ``claims`` of the kind of token (subject, roles or scopes...).
        """
        now = int(self.clock() if issued_at is None else issued_at)
        if v2:
            by_client = {"azp": client, "azpacr": client_auth}
        else:
            by_client = {"appid": client, "appidacr": client_auth}
        return _entra_order(
            {
                "aud": audience,
                "iss": _issuer_v2(self.tenant_id) if v2 else self.issuer,
                "iat": now,
                "nbf": now,
                "exp": now + lifetime,
                "aio": b64url(secrets.token_bytes(48)),
                "rh": "0." + b64url(secrets.token_bytes(40)) + ".",
                "tid": self.tenant_id,
                "uti": b64url(secrets.token_bytes(16)),
                "ver": "2.0" if v2 else "1.0",
                **by_client,
                **claims,
            }
        )

    def sign(self, claims: dict[str, Any]) -> IssuedToken:
        """Sign ``claims`` with the key that signs now."""
        key = self.keys.signing()
        header = {"typ": "JWT", "alg": "RS256", "x5t": key.kid, "kid": key.kid}
        token = jwt.encode(
            claims, key.private_key, algorithm="RS256", headers=header, sort_headers=False
        )
        return IssuedToken(token, claims, key.kid)

    def mint(
        self,
        identity: ManagedIdentity,
        resource: str,
        *,
        issued_at: float | None = None,
        lifetime: int | None = None,
    ) -> IssuedToken:
        """A signed token for ``identity`` and ``resource`` (the ``aud``)."""
        return self.sign(self.claims(identity, resource, issued_at=issued_at, lifetime=lifetime))

    def forge(self, identity: ManagedIdentity, resource: str) -> str:
        """A token that names the current kid but is signed by a key nobody published."""
        claims = self.claims(identity, resource)
        kid = self.keys.signing().kid
        header = {"typ": "JWT", "alg": "RS256", "x5t": kid, "kid": kid}
        return jwt.encode(claims, generate_key("RSA"), algorithm="RS256", headers=header)

    # -- metadata ---------------------------------------------------------------

    def discovery_document(self, tenant: str, version: str) -> dict[str, Any]:
        """An Entra-like discovery document (``tenant`` may be ``common``: issuer template)."""
        base = f"{self.base_url}/{tenant}"
        tid = "{tenantid}" if tenant == "common" else self.tenant_id
        if version == "2.0":
            return {
                "token_endpoint": f"{base}/oauth2/v2.0/token",
                "token_endpoint_auth_methods_supported": [
                    "client_secret_post",
                    "private_key_jwt",
                    "client_secret_basic",
                ],
                "jwks_uri": f"{base}/discovery/v2.0/keys",
                "response_modes_supported": ["query", "fragment", "form_post"],
                "subject_types_supported": ["pairwise"],
                "id_token_signing_alg_values_supported": ["RS256"],
                "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
                "scopes_supported": ["openid", "profile", "email", "offline_access"],
                "issuer": _issuer_v2(tid),
                "request_uri_parameter_supported": False,
                "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
                "tenant_region_scope": "EU",
                "cloud_instance_name": "microsoftonline.com",
            }
        return {
            "token_endpoint": f"{base}/oauth2/token",
            "token_endpoint_auth_methods_supported": [
                "client_secret_post",
                "private_key_jwt",
                "client_secret_basic",
            ],
            "jwks_uri": f"{base}/discovery/keys",
            "response_modes_supported": ["query", "fragment", "form_post"],
            "subject_types_supported": ["pairwise"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "response_types_supported": [
                "code",
                "id_token",
                "code id_token",
                "token id_token",
                "token",
            ],
            "scopes_supported": ["openid"],
            "issuer": _issuer_v1(tid),
            "microsoft_multi_refresh_token": True,
            "authorization_endpoint": f"{base}/oauth2/authorize",
            "tenant_region_scope": "EU",
            "cloud_instance_name": "microsoftonline.com",
        }

    def jwks(self, version: str = "1.0", tenant: str | None = None) -> dict[str, Any]:
        """The keys published now; v2 entries name their issuer as Entra's do."""
        keys = [key.public_jwk() for key in self.keys.published()]
        if version == "2.0":
            tid = "{tenantid}" if tenant == "common" else self.tenant_id
            for entry in keys:
                entry["issuer"] = _issuer_v2(tid)
        return {"keys": keys}

    # -- the app ----------------------------------------------------------------

    def _tenant(self, request: Request) -> str | None:
        tenant = str(request.path_params["tenant"]).lower()
        return tenant if tenant in (self.tenant_id, "common") else None

    def _cached_json(self, request: Request, body: dict[str, Any]) -> Response:
        data = json.dumps(body).encode()
        etag = '"' + hashlib.sha256(data).hexdigest()[:32] + '"'
        headers = {
            "Cache-Control": f"max-age={self.config.issuer.jwks_max_age}, private",
            "ETag": etag,
        }
        if request.headers.get("if-none-match") == etag:
            return Response(status_code=304, headers=headers)
        return Response(data, headers=headers, media_type="application/json; charset=utf-8")

    async def _discovery(self, request: Request) -> Response:
        tenant = self._tenant(request)
        if tenant is None:
            return _unknown_tenant()
        version = (
            "2.0" if request.url.path.endswith("/v2.0/.well-known/openid-configuration") else "1.0"
        )
        self.hits[f"discovery_v{version[0]}"] += 1
        return self._cached_json(request, self.discovery_document(tenant, version))

    async def _keys(self, request: Request) -> Response:
        tenant = self._tenant(request)
        if tenant is None:
            return _unknown_tenant()
        version = "2.0" if request.url.path.endswith("/v2.0/keys") else "1.0"
        self.hits[f"jwks_v{version[0]}"] += 1
        return self._cached_json(request, self.jwks(version, tenant))

    async def _token_endpoint(self, request: Request) -> Response:
        return JSONResponse(
            {
                "error": "unsupported_grant_type",
                "error_description": "The lab issues tokens to managed identities via IMDS,"
                " and to users through /oauth2/v2.0/authorize and /oauth2/v2.0/token.",
            },
            status_code=400,
        )

    def _admin_refused(self, request: Request) -> Response | None:
        if self.admin_secret is None:
            return JSONResponse({"error": "not_found"}, status_code=404)
        host = request.client.host if request.client else ""
        given = request.headers.get(ADMIN_HEADER, "")
        if not is_loopback_host(host) or not hmac.compare_digest(
            given.encode(), self.admin_secret.encode()
        ):
            return JSONResponse({"error": "forbidden"}, status_code=403)
        return None

    async def _admin_keys(self, request: Request) -> Response:
        refused = self._admin_refused(request)
        if refused is not None:
            return refused
        return JSONResponse({"keys": self.keys.status()})

    async def _admin_body(self, request: Request) -> dict[str, Any] | Response:
        """The admin request's JSON object (``{}`` when empty), or the refusal to send."""
        refused = self._admin_refused(request)
        if refused is not None:
            return refused
        try:
            raw = await read_body(request, _MAX_ADMIN_BODY)
        except BodyTooLarge as exc:
            return JSONResponse({"error": "too_large", "error_description": str(exc)}, 413)
        try:
            body = json.loads(raw or b"{}")
        except (ValueError, RecursionError):
            return _bad_request("the body is not JSON")
        if not isinstance(body, dict):
            return _bad_request("the body must be a JSON object")
        return body

    async def _admin_rotate(self, request: Request) -> Response:
        body = await self._admin_body(request)
        if isinstance(body, Response):
            return body
        settings = self.config.issuer
        try:
            overlap = float(body.get("overlap", settings.rotation_overlap))
            retire_after = float(body.get("retire_after", settings.rotation_retire_after))
            if not (math.isfinite(overlap) and math.isfinite(retire_after)):
                raise ValueError("not a finite number")
            kid = self.keys.rotate(overlap=overlap, retire_after=retire_after)
        except (ValueError, TypeError):
            return _bad_request('expected {"overlap": seconds, "retire_after": seconds}, both >= 0')
        return JSONResponse({"kid": kid, "keys": self.keys.status()})

    async def _admin_apps(self, request: Request) -> Response:
        refused = self._admin_refused(request)
        if refused is not None:
            return refused
        return JSONResponse(self.apps.as_json())

    async def _admin_register(self, request: Request) -> Response:
        body = await self._admin_body(request)
        if isinstance(body, Response):
            return body
        fields = {
            "app_id",
            "identifier_uri",
            "app_roles",
            "token_version",
            "scopes",
            "redirect_uris",
        }
        try:
            if not set(body) <= fields or not isinstance(body.get("app_id"), str):
                raise ValueError(f"expected an object with app_id and any of {sorted(fields)}")
            app_id = str(body["app_id"])
            roles = body.get("app_roles", [])
            scopes = body.get("scopes", [])
            redirect_uris = body.get("redirect_uris", [])
            if not all(isinstance(v, list) for v in (roles, scopes, redirect_uris)):
                raise ValueError("app_roles, scopes and redirect_uris must be lists of strings")
            registration = AppRegistration(
                name=str(request.path_params["name"]),
                app_id=app_id,
                identifier_uri=str(body.get("identifier_uri", f"api://{app_id}")),
                app_roles=tuple(roles),
                token_version=body.get("token_version", 1),
                scopes=tuple(scopes),
                redirect_uris=tuple(redirect_uris),
            )
            self.apps.register(registration)
        except ValueError as exc:
            return _bad_request(str(exc))
        return JSONResponse(registration.as_json())

    async def _admin_app_role(self, request: Request) -> Response:
        body = await self._admin_body(request)
        if isinstance(body, Response):
            return body
        if set(body) != {"principal", "app", "role"} or not all(
            isinstance(v, str) for v in body.values()
        ):
            return _bad_request(
                'expected {"principal": name or object id, "app": ..., "role": ...}'
            )
        principal = self.config.principal(body["principal"])
        if principal is None:
            return _bad_request("principal is neither a lab identity nor an object id")
        assignment = AppRoleAssignment(principal=principal, app=body["app"], role=body["role"])
        if request.method == "DELETE":
            if not self.apps.unassign(assignment):
                return JSONResponse({"error": "not_found"}, status_code=404)
            return Response(status_code=204)
        try:
            created = self.apps.assign(assignment)
        except ValueError as exc:
            return _bad_request(str(exc))
        return JSONResponse(assignment.as_json(), status_code=201 if created else 200)

    def app(self) -> Starlette:
        """The ASGI app serving discovery, JWKS and the admin routes."""
        return Starlette(
            routes=[
                Route("/_lab/keys", self._admin_keys, methods=["GET"]),
                Route("/_lab/rotate", self._admin_rotate, methods=["POST"]),
                Route("/_lab/apps", self._admin_apps, methods=["GET"]),
                Route("/_lab/apps/{name}", self._admin_register, methods=["PUT"]),
                Route(
                    "/_lab/app-role-assignments",
                    self._admin_app_role,
                    methods=["POST", "DELETE"],
                ),
                Route("/{tenant}/.well-known/openid-configuration", self._discovery),
                Route("/{tenant}/v2.0/.well-known/openid-configuration", self._discovery),
                Route("/{tenant}/discovery/keys", self._keys),
                Route("/{tenant}/discovery/v2.0/keys", self._keys),
                Route("/{tenant}/oauth2/token", self._token_endpoint, methods=["POST"]),
                *self.sign_in.routes(),
            ]
        )


def is_loopback_host(host: str) -> bool:
    """True for ``localhost`` and loopback addresses (the admin routes answer those only)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _bad_request(description: str) -> JSONResponse:
    return JSONResponse({"error": "bad_request", "error_description": description}, 400)


def _unknown_tenant() -> JSONResponse:
    return JSONResponse(
        {
            "error": "invalid_tenant",
            "error_description": "AADSTS90002: Tenant not found. Check the tenant id.",
        },
        status_code=400,
    )
