"""Users signing in: the authorization code flow with PKCE, as Entra's v2 endpoints run it.

    GET|POST /{tenant}/oauth2/v2.0/authorize   the sign-in page (one button per lab user)
    POST     /{tenant}/oauth2/v2.0/token       a code (and its PKCE verifier) for a token

What a public client such as Swagger UI does: send the user to ``authorize`` with
``response_type=code``, its ``client_id`` and registered ``redirect_uri``, the ``scope``
(``api://tokenguard-lab-api/Secrets.Read``) and a PKCE ``code_challenge`` (S256 only); the
page lists the lab's users, a click (or ``login_hint=<preferred_username>``, for scripts)
sends the browser back to ``redirect_uri?code=...&state=...``; the client redeems the code
with the ``code_verifier`` at ``token``.

The rules, with RFC 6749 / 7636 errors: an unknown client or a redirect URI it did not
register is answered on the page itself (400, never a redirect to an unchecked URI); any
other problem is sent back to the redirect URI as ``error=`` (``unsupported_response_type``,
``invalid_request`` for a missing or ``plain`` challenge, ``invalid_scope``). Codes are
one-time, expire after :data:`CODE_LIFETIME` seconds of the issuer's clock and are bound
to the client, the redirect URI and the challenge; redeeming one wrongly is
``invalid_grant``. Request bodies over :data:`MAX_FORM_BODY` bytes are refused (413).

The access token is shaped as Entra shapes a user's: ``scp`` (the granted scopes, short
names), ``oid``, ``tid``, ``name``, and the v2 claims (``azp``, ``preferred_username``,
``ver`` 2.0, the v2 issuer) when the API accepts v2 tokens, else the v1 ones (``appid``,
``upn``, ``ver`` 1.0, ``sts.windows.net``): the version follows the API's registration
(``accessTokenAcceptedVersion``), not the endpoint, as in Entra.
"""

from __future__ import annotations

import hashlib
import hmac
import html
import re
import secrets
from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from .._http import BodyTooLarge, read_body
from .apps import AppRegistration
from .keys import b64url
from .tenant import LabUser

if TYPE_CHECKING:
    from .issuer import LabIssuer

__all__ = ["CODE_LIFETIME", "MAX_FORM_BODY", "MAX_PENDING_CODES", "USER_TOKEN_LIFETIME", "SignIn"]

#: Seconds an authorization code can be redeemed (Entra: about 10 minutes; shorter here).
CODE_LIFETIME: Final = 60
#: Lifetime of a user's access token, seconds (Entra: 60 to 90 minutes).
USER_TOKEN_LIFETIME: Final = 3600
#: Largest form body the authorize and token endpoints read.
MAX_FORM_BODY: Final = 16 * 1024
#: Codes issued and not yet redeemed; the oldest go first beyond this.
MAX_PENDING_CODES: Final = 1024
#: OpenID Connect scopes: accepted, and not put in the access token.
_OIDC_SCOPES: Final = frozenset({"openid", "profile", "email", "offline_access"})
#: RFC 7636 4.1: 43 to 128 unreserved characters.
_VERIFIER: Final = re.compile(r"[A-Za-z0-9._~-]{43,128}")
_CHALLENGE: Final = re.compile(r"[A-Za-z0-9_-]{43}")
_PARAMETERS: Final = (
    "response_type",
    "client_id",
    "redirect_uri",
    "scope",
    "state",
    "code_challenge",
    "code_challenge_method",
    "response_mode",
    "nonce",
    "prompt",
    "login_hint",
)
_NO_STORE: Final = {"Cache-Control": "no-store", "Pragma": "no-cache"}


class OAuthError(Exception):
    """An RFC 6749 error: ``code`` (``invalid_request``...) and a description."""

    def __init__(self, code: str, description: str, status: int = 400) -> None:
        super().__init__(description)
        self.code = code
        self.description = description
        self.status = status


@dataclass(frozen=True)
class _Grant:
    """What an authorization code stands for."""

    client_id: str
    redirect_uri: str
    challenge: str
    user: LabUser
    api: AppRegistration
    scopes: tuple[str, ...]
    expires_at: float


@dataclass(frozen=True)
class _Authorization:
    """A checked authorization request."""

    client: AppRegistration
    redirect_uri: str
    params: dict[str, str]
    api: AppRegistration
    scopes: tuple[str, ...]
    challenge: str


class SignIn:
    """The authorize page and the token endpoint of the lab's issuer."""

    def __init__(self, issuer: LabIssuer) -> None:
        self.issuer = issuer
        self._codes: OrderedDict[str, _Grant] = OrderedDict()

    def routes(self) -> list[Route]:
        """The two endpoints, under ``/{tenant}/oauth2/v2.0/``."""
        return [
            Route("/{tenant}/oauth2/v2.0/authorize", self.authorize, methods=["GET", "POST"]),
            Route("/{tenant}/oauth2/v2.0/token", self.token, methods=["POST", "OPTIONS"]),
        ]

    # -- authorize ----------------------------------------------------------------

    async def authorize(self, request: Request) -> Response:
        """Check the request; show the sign-in page, or (user chosen) redirect with a code."""
        if self.issuer._tenant(request) is None:
            return _page("Unknown tenant", "AADSTS90002: Tenant not found.", 400)
        params: dict[str, str] = {}
        user_choice = None
        if request.method == "POST":
            try:
                form = await _form(request)
            except OAuthError as exc:
                return _page("Bad request", exc.description, exc.status)
            user_choice = form.pop("user", None)
            params = form
        else:
            query = request.query_params
            if any(len(query.getlist(name)) > 1 for name in query):
                return _page("Bad request", "A parameter is repeated.", 400)
            params = dict(query)
        try:
            client, redirect_uri = self._client_and_redirect(params)
        except OAuthError as exc:  # never redirect to a URI the client did not register
            return _page("Sign-in refused", f"{exc.code}: {exc.description}", 400)
        state = params.get("state")
        try:
            checked = self._check(params, client, redirect_uri)
            hint = user_choice or params.get("login_hint")
            if hint is None:
                return self._sign_in_page(request, checked)
            user = self.issuer.config.user(hint)
            if user is None:
                raise OAuthError("invalid_request", "login_hint names no user of the tenant.")
        except OAuthError as exc:
            return _redirect(
                redirect_uri, {"error": exc.code, "error_description": exc.description}, state
            )
        code = self._issue(checked, user)
        return _redirect(redirect_uri, {"code": code}, state)

    def _client_and_redirect(self, params: dict[str, str]) -> tuple[AppRegistration, str]:
        client_id = params.get("client_id", "")
        client = self._client(client_id)
        if client is None:
            raise OAuthError("invalid_client", "client_id names no app registration.")
        redirect_uri = params.get("redirect_uri", "")
        if not redirect_uri:
            raise OAuthError("invalid_request", "redirect_uri is required.")
        if not client.accepts_redirect(redirect_uri):
            raise OAuthError(
                "invalid_request",
                "AADSTS50011: redirect_uri is not registered for the client.",
            )
        return client, redirect_uri

    def _client(self, client_id: str) -> AppRegistration | None:
        folded = client_id.lower()
        found = (a for a in self.issuer.apps.registrations if a.app_id == folded)
        return next(found, None)

    def _check(
        self, params: dict[str, str], client: AppRegistration, redirect_uri: str
    ) -> _Authorization:
        response_type = params.get("response_type")
        if not response_type:
            raise OAuthError("invalid_request", "response_type is required.")
        if response_type != "code":
            raise OAuthError("unsupported_response_type", "Only response_type=code is supported.")
        if params.get("response_mode", "query") != "query":
            raise OAuthError("invalid_request", "Only response_mode=query is supported.")
        challenge = params.get("code_challenge")
        if not challenge:
            raise OAuthError("invalid_request", "PKCE is required: send a code_challenge.")
        if params.get("code_challenge_method") != "S256":
            raise OAuthError(
                "invalid_request",
                "transform algorithm not supported: use code_challenge_method=S256.",
            )
        if not _CHALLENGE.fullmatch(challenge):
            raise OAuthError("invalid_request", "code_challenge is not a base64url SHA-256 digest.")
        api, scopes = self._scopes(params.get("scope", ""))
        return _Authorization(client, redirect_uri, params, api, scopes, challenge)

    def _scopes(self, text: str) -> tuple[AppRegistration, tuple[str, ...]]:
        """The API and its scopes the request names (one API per request, as in Entra)."""
        names = [s for s in text.split(" ") if s and s not in _OIDC_SCOPES]
        if not names:
            raise OAuthError("invalid_scope", "Request a scope of an API (api://.../Scope).")
        api: AppRegistration | None = None
        granted: list[str] = []
        for name in names:
            resource, _, short = name.rpartition("/")
            found = self.issuer.apps.for_resource(resource) if resource and short else None
            if found is None:
                raise OAuthError("invalid_scope", "A scope names no registered API.")
            if api is not None and found != api:
                raise OAuthError(
                    "invalid_scope", "AADSTS28000: request scopes of one API at a time."
                )
            api = found
            wanted = found.scopes if short == ".default" else (short,)
            if short != ".default" and short not in found.scopes:
                raise OAuthError("invalid_scope", "The API does not expose the scope requested.")
            granted.extend(s for s in wanted if s not in granted)
        assert api is not None
        if not granted:
            raise OAuthError("invalid_scope", "The API exposes no delegated scope.")
        return api, tuple(granted)

    def _issue(self, request: _Authorization, user: LabUser) -> str:
        code = secrets.token_urlsafe(32)
        self._codes[code] = _Grant(
            client_id=request.client.app_id,
            redirect_uri=request.redirect_uri,
            challenge=request.challenge,
            user=user,
            api=request.api,
            scopes=request.scopes,
            expires_at=self.issuer.clock() + CODE_LIFETIME,
        )
        while len(self._codes) > MAX_PENDING_CODES:
            self._codes.popitem(last=False)
        return code

    def _sign_in_page(self, request: Request, auth: _Authorization) -> Response:
        hidden = "".join(
            f'<input type="hidden" name="{name}" value="{html.escape(auth.params[name])}">'
            for name in _PARAMETERS
            if name in auth.params and name != "login_hint"
        )
        buttons = "".join(
            f'<li><form method="post" action="{html.escape(request.url.path)}">{hidden}'
            f'<input type="hidden" name="user" value="{user.object_id}">'
            f'<button type="submit" id="signin-{user.object_id}" '
            f'data-username="{html.escape(user.preferred_username)}">'
            f"Sign in as {html.escape(user.name)}</button> "
            f"<small>{html.escape(user.preferred_username)}</small></form></li>"
            for user in self.issuer.config.users
        )
        scopes = ", ".join(auth.scopes)
        body = (
            f"<p><b>{html.escape(auth.client.name)}</b> asks to call "
            f"<b>{html.escape(auth.api.name)}</b> on your behalf ({html.escape(scopes)}).</p>"
            f"<ul>{buttons or '<li>The lab has no users: add [[users]] to its config.</li>'}</ul>"
        )
        return _page("Sign in to the tokenguard lab", body, 200, escape=False)

    # -- token --------------------------------------------------------------------

    async def token(self, request: Request) -> Response:
        """Redeem a code: ``grant_type=authorization_code``, ``client_id``, ``code``,
        ``redirect_uri``, ``code_verifier``."""
        origin = request.headers.get("origin")
        if request.method == "OPTIONS":
            return Response(status_code=204, headers=_preflight(origin))
        if self.issuer._tenant(request) is None:
            return _error(OAuthError("invalid_request", "AADSTS90002: Tenant not found."))
        client: AppRegistration | None = None
        try:
            form = await _form(request)
            grant_type = form.get("grant_type")
            if not grant_type:
                raise OAuthError("invalid_request", "grant_type is required.")
            if grant_type != "authorization_code":
                raise OAuthError(
                    "unsupported_grant_type",
                    "The lab signs users in with authorization_code; managed identities use IMDS.",
                )
            client = self._client(form.get("client_id", ""))
            if client is None:
                raise OAuthError("invalid_client", "client_id names no app registration.", 401)
            if origin is not None and not client.accepts_origin(origin):
                raise OAuthError(
                    "invalid_request",
                    "AADSTS9002326: cross-origin redemption only from the origin of a"
                    " registered redirect URI.",
                )
            body = self._redeem(form, client)
        except OAuthError as exc:
            return _error(exc, _cors(origin, client))
        return JSONResponse(body, headers={**_NO_STORE, **_cors(origin, client)})

    def _redeem(self, form: dict[str, str], client: AppRegistration) -> dict[str, Any]:
        for name in ("code", "redirect_uri", "code_verifier"):
            if not form.get(name):
                raise OAuthError("invalid_request", f"{name} is required.")
        grant = self._codes.pop(form["code"], None)  # one-time, even when redeemed wrongly
        if grant is None or self.issuer.clock() >= grant.expires_at:
            raise OAuthError("invalid_grant", "The code is unknown, expired or already used.")
        if grant.client_id != client.app_id:
            raise OAuthError("invalid_grant", "The code was issued to another client.")
        if grant.redirect_uri != form["redirect_uri"]:
            raise OAuthError("invalid_grant", "redirect_uri differs from the authorize request's.")
        verifier = form["code_verifier"]
        digest = b64url(hashlib.sha256(verifier.encode()).digest())
        if not _VERIFIER.fullmatch(verifier) or not hmac.compare_digest(digest, grant.challenge):
            raise OAuthError(
                "invalid_grant", "The code_verifier does not match the code_challenge."
            )
        issued = self.issuer.sign(self.user_claims(grant.user, grant.api, client, grant.scopes))
        return {
            "token_type": "Bearer",
            "scope": " ".join(f"{grant.api.identifier_uri}/{s}" for s in grant.scopes),
            "expires_in": USER_TOKEN_LIFETIME,
            "ext_expires_in": USER_TOKEN_LIFETIME,
            "access_token": issued.token,
        }

    def user_claims(
        self,
        user: LabUser,
        api: AppRegistration,
        client: AppRegistration,
        scopes: tuple[str, ...],
    ) -> dict[str, Any]:
        """Claims of ``user``'s access token for ``api`` requested by ``client``."""
        v2 = api.token_version == 2
        own: dict[str, Any] = {
            "name": user.name,
            "oid": user.object_id,
            "scp": " ".join(scopes),
            # Entra's sub is pairwise: the same user has another sub in each app.
            "sub": b64url(hashlib.sha256(f"{user.object_id}:{api.app_id}".encode()).digest()),
        }
        if v2:
            own["preferred_username"] = user.preferred_username
        else:
            own["amr"] = ["pwd"]
            own["unique_name"] = own["upn"] = user.preferred_username
        return self.issuer.access_claims(
            api.app_id if v2 else api.identifier_uri,
            v2=v2,
            client=client.app_id,
            client_auth="0",
            lifetime=USER_TOKEN_LIFETIME,
            claims=own,
        )


async def _form(request: Request) -> dict[str, str]:
    """The form body's fields (each at most once), or :class:`OAuthError`."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != "application/x-www-form-urlencoded":
        raise OAuthError(
            "invalid_request", "Send the parameters as a form (x-www-form-urlencoded)."
        )
    try:
        raw = await read_body(request, MAX_FORM_BODY)
    except BodyTooLarge as exc:
        raise OAuthError("invalid_request", str(exc), 413) from None
    try:
        pairs = parse_qsl(raw.decode("utf-8"), keep_blank_values=True, strict_parsing=False)
    except UnicodeDecodeError:
        raise OAuthError("invalid_request", "The form is not UTF-8.") from None
    form: dict[str, str] = {}
    for name, value in pairs:
        if name in form:
            raise OAuthError("invalid_request", "A parameter is repeated.")
        form[name] = value
    return form


def _redirect(redirect_uri: str, values: dict[str, str], state: str | None) -> Response:
    if state is not None:
        values = {**values, "state": state}
    parts = urlsplit(redirect_uri)
    query = "&".join(filter(None, [parts.query, urlencode(values)]))
    return RedirectResponse(urlunsplit(parts._replace(query=query)), status_code=302)


def _error(exc: OAuthError, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(
        {"error": exc.code, "error_description": exc.description},
        status_code=exc.status,
        headers={**_NO_STORE, **(headers or {})},
    )


def _preflight(origin: str | None) -> dict[str, str]:
    # Answered for any origin; the POST itself is refused unless the origin is the
    # client's (Entra likewise only lets single-page-app clients redeem cross-origin).
    if origin is None:
        return {}
    return {
        "Access-Control-Allow-Origin": origin,
        "Access-Control-Allow-Methods": "POST, OPTIONS",
        "Access-Control-Allow-Headers": "Content-Type, Accept, X-Requested-With",
        "Access-Control-Max-Age": "600",
        "Vary": "Origin",
    }


def _cors(origin: str | None, client: AppRegistration | None) -> dict[str, str]:
    if origin is None or client is None or not client.accepts_origin(origin):
        return {}
    return {"Access-Control-Allow-Origin": origin, "Vary": "Origin"}


_PAGE: Final = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>body{{font-family:sans-serif;max-width:40em;margin:3em auto}}li{{margin:.6em 0}}
button{{font-size:1em;padding:.3em .8em}}</style></head>
<body><h1>{title}</h1>{body}</body></html>"""


def _page(title: str, body: str, status: int, *, escape: bool = True) -> HTMLResponse:
    text = f"<p>{html.escape(body)}</p>" if escape else body
    return HTMLResponse(
        _PAGE.format(title=html.escape(title), body=text),
        status_code=status,
        headers={**_NO_STORE, "X-Frame-Options": "DENY"},
    )
