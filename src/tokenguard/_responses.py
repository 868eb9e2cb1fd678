"""RFC 6750 answers: the ``WWW-Authenticate`` challenge and a small JSON body.

Descriptions come from the fixed vocabulary in :mod:`tokenguard._errors`; nothing
from the request is echoed.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from starlette.responses import JSONResponse

from ._errors import InsufficientScope, KeysUnavailable, MissingToken, TokenGuardError

__all__ = ["DEFAULT_REALM", "challenge", "error_headers", "error_response"]

DEFAULT_REALM: Final = "tokenguard"
_BODY_ERROR: Final = {MissingToken: "unauthenticated", KeysUnavailable: "temporarily_unavailable"}


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
    if isinstance(exc, InsufficientScope) and exc.required:
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
        "error": exc.error or _BODY_ERROR.get(type(exc), "unauthenticated"),
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
