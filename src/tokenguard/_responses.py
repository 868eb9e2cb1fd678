"""RFC 6750 answers: the ``WWW-Authenticate`` challenge and a small JSON body.

Descriptions come from the fixed vocabulary in :mod:`tokenguard._errors`; nothing
from the request is echoed.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Final

from starlette.responses import JSONResponse
from starlette.types import Send

from ._errors import InsufficientScope, KeysUnavailable, MissingToken, TokenGuardError

if TYPE_CHECKING:
    from ._identity import Identity

__all__ = [
    "DEFAULT_REALM",
    "WS_POLICY_VIOLATION",
    "WS_TRY_AGAIN_LATER",
    "ErrorAnswers",
    "challenge",
    "error_headers",
    "error_response",
    "log_rejection",
    "websocket_close_code",
]

logger = logging.getLogger("tokenguard")

#: WebSocket close codes (RFC 6455 section 7.4.1 and the IANA registry): the
#: WebSocket counterparts of 401/403 and of 503.
WS_POLICY_VIOLATION: Final = 1008
WS_TRY_AGAIN_LATER: Final = 1013

DEFAULT_REALM: Final = "tokenguard"
_BODY_ERROR: Final = {MissingToken: "unauthenticated", KeysUnavailable: "temporarily_unavailable"}


def _body_error(exc: TokenGuardError) -> str:
    """The body's ``error`` for an answer without an RFC 6750 code (subclasses included)."""
    for kind, error in _BODY_ERROR.items():
        if isinstance(exc, kind):
            return error
    return "unauthenticated"


def log_rejection(exc: TokenGuardError, identity: Identity | None = None) -> None:
    """Log a rejection once, its facts in the message text (plain log handlers show
    only the text) and in ``extra``: reason, status, issuer, kid, token fingerprint and,
    for a 403, who was refused (object id, app id, tenant; never the token)."""
    if exc.logged:
        return
    exc.logged = True
    facts: dict[str, object] = {"reason": exc.reason, "status": exc.status_code}
    for name in ("issuer", "kid", "fingerprint"):
        value = getattr(exc, name)
        if value is not None:
            facts[name] = value
    if identity is not None:
        facts["caller"] = identity.object_id or identity.subject or "-"
        if identity.app_id is not None:
            facts["app_id"] = identity.app_id
        if identity.tenant_id is not None:
            facts["tenant"] = identity.tenant_id
        facts["issuer"] = identity.issuer
    text = " ".join(f"{name}={value}" for name, value in facts.items())
    level = logging.WARNING if isinstance(exc, KeysUnavailable) else logging.INFO
    logger.log(level, "request rejected: %s", text, extra=facts)


def websocket_close_code(exc: TokenGuardError) -> int:
    """The close code that refuses a WebSocket: 1013 (try again later) when the keys
    are unavailable, else 1008 (policy violation)."""
    return WS_TRY_AGAIN_LATER if isinstance(exc, KeysUnavailable) else WS_POLICY_VIOLATION


_SCOPE_TOKEN: Final = re.compile(r"[\x21\x23-\x5b\x5d-\x7e]+")


def _quote(value: str) -> str:
    # RFC 6750 3: auth-param values are quoted strings; keep them printable ASCII.
    safe = "".join(c for c in value if " " <= c <= "~" and c not in '"\\')
    return f'"{safe}"'


def challenge(
    exc: TokenGuardError,
    realm: str | None = DEFAULT_REALM,
    params: Mapping[str, str] | None = None,
) -> str:
    """The ``WWW-Authenticate`` value for an error (RFC 6750 section 3)."""
    parts: list[str] = []
    if realm:
        parts.append(f"realm={_quote(realm)}")
    for name, value in (params or {}).items():
        parts.append(f"{name}={_quote(value)}")
    if exc.error is not None:
        parts.append(f"error={_quote(exc.error)}")
        parts.append(f"error_description={_quote(exc.description)}")
    # RFC 6750 3: scope= lists scope tokens (RFC 6749 3.3: no spaces, quotes or
    # backslashes), all of them needed. App role names may hold spaces ("Key Vault
    # Secrets User"): then it is left out rather than split into wrong names.
    if (
        isinstance(exc, InsufficientScope)
        and exc.required
        and all(_SCOPE_TOKEN.fullmatch(name) for name in exc.required)
    ):
        parts.append(f"scope={_quote(' '.join(sorted(exc.required)))}")
    return "Bearer " + ", ".join(parts) if parts else "Bearer"


def error_headers(
    exc: TokenGuardError,
    realm: str | None = DEFAULT_REALM,
    params: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """Headers that go with an error: the challenge, and ``Retry-After`` for 503."""
    if isinstance(exc, KeysUnavailable):
        return {"Retry-After": str(exc.retry_after)}
    return {"WWW-Authenticate": challenge(exc, realm, params)}


def error_body(exc: TokenGuardError) -> dict[str, str]:
    """The JSON body: ``{"error": ..., "error_description": ...}``."""
    return {
        "error": exc.error or _body_error(exc),
        "error_description": exc.description,
    }


def error_response(
    exc: TokenGuardError,
    realm: str | None = DEFAULT_REALM,
    params: Mapping[str, str] | None = None,
) -> JSONResponse:
    """A ready response for an error: status, challenge header and JSON body."""
    return JSONResponse(
        error_body(exc),
        status_code=exc.status_code,
        headers=error_headers(exc, realm, params),
    )


_Answer = tuple[int, list[tuple[bytes, bytes]], bytes]
_MAX_ANSWERS: Final = 256


class ErrorAnswers:
    """Ready-made raw ASGI answers per error, built once (rejection floods stay cheap).

    Keyed by error class, reason, required scopes and ``Retry-After``: all from the
    fixed vocabulary and the app's configuration, never from the request. Bounded
    anyway; past the bound an answer is built each time.
    """

    __slots__ = ("_answers", "params", "realm")

    def __init__(self, realm: str | None, params: Mapping[str, str] | None) -> None:
        self.realm = realm
        self.params = dict(params or {})
        self._answers: dict[tuple[object, ...], _Answer] = {}

    def answer(self, exc: TokenGuardError) -> _Answer:
        """``(status, raw headers, body)`` for ``exc``."""
        key = (
            type(exc),
            exc.reason,
            exc.required if isinstance(exc, InsufficientScope) else None,
            exc.retry_after if isinstance(exc, KeysUnavailable) else None,
        )
        found = self._answers.get(key)
        if found is None:
            found = self._build(exc)
            if len(self._answers) < _MAX_ANSWERS:
                self._answers[key] = found
        return found

    def _build(self, exc: TokenGuardError) -> _Answer:
        response = error_response(exc, self.realm, self.params)
        return response.status_code, response.raw_headers, bytes(response.body)

    async def send(self, exc: TokenGuardError, send: Send) -> None:
        """Send the answer for ``exc`` on an HTTP connection."""
        status, headers, body = self.answer(exc)
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})
