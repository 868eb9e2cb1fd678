"""The first step of a request: find the bearer token (RFC 6750 section 2).

Only the ``Authorization: Bearer`` header is accepted by default; the URI query
form (``access_token=``) is opt-in, and a token sent both ways is refused. The
form-encoded body form is never read (it would mean consuming the body).
"""

from __future__ import annotations

from typing import Final
from urllib.parse import parse_qsl

from starlette.types import Scope

from ._errors import InvalidRequest, InvalidToken

__all__ = ["authorization_value", "bearer_credentials", "max_header_bytes"]

_SCHEME_LEN: Final = len(b"bearer ")


def max_header_bytes(max_token_bytes: int) -> int:
    """The longest ``Authorization`` value that can hold an acceptable token."""
    return max_token_bytes + _SCHEME_LEN + 16


def authorization_value(scope: Scope) -> bytes | None:
    """The request's one ``Authorization`` value, as sent, for a cache lookup; ``None``
    when there is none, several, or a query string that may carry a token (the general
    path, :func:`bearer_credentials`, decides those)."""
    value = None
    for name, header in scope["headers"]:
        if name == b"authorization":
            if value is not None:
                return None
            value = header
    query = scope.get("query_string")
    if query and query.find(b"access_token") != -1:
        return None
    return value


def bearer_credentials(
    scope: Scope, *, max_token_bytes: int, allow_query_token: bool = False
) -> bytes | None:
    """The bearer token of an HTTP or WebSocket scope as bytes, or ``None`` without one.

    Another scheme (Basic, Negotiate...) counts as no bearer credentials. Two
    ``Authorization`` headers, an empty token, or a token both in the header and the
    query string are :class:`InvalidRequest` (400); an oversized header is
    ``InvalidToken(reason="token_too_large")``, refused before any decoding.
    """
    value: bytes | None = None
    for name, header in scope["headers"]:
        if name == b"authorization":
            if value is not None:
                raise InvalidRequest(reason="multiple_authorization")
            value = header
    if value is None:
        return _query_only(_query_token(scope), allow_query_token)
    if len(value) > max_header_bytes(max_token_bytes):
        raise InvalidToken(reason="token_too_large")
    # The common spelling, checked cheaply (bytes.find, not ``in``: ``in`` first tries
    # the operand as an int and raises, and swallows, a TypeError); anything else takes
    # the general path.
    if (
        len(value) > 7
        and value[7] != 32
        and value[-1] != 32
        and value.startswith(b"Bearer ")
        and scope.get("query_string", b"").find(b"access_token") == -1
    ):
        return value[7:]
    query_token = _query_token(scope)
    scheme, _, credentials = value.partition(b" ")
    if scheme.lower() != b"bearer":
        return _query_only(query_token, allow_query_token)
    if query_token is not None:
        raise InvalidRequest(reason="multiple_methods")
    credentials = credentials.strip(b" ")
    if not credentials:
        raise InvalidRequest(reason="empty_token")
    return credentials


def _query_only(token: str | None, allowed: bool) -> bytes | None:
    if token is None:
        return None
    if not allowed:
        raise InvalidRequest(reason="query_token_not_allowed")
    return token.encode("latin-1")


def _query_token(scope: Scope) -> str | None:
    query: bytes = scope.get("query_string", b"")
    if query.find(b"access_token") == -1:
        return None
    values = [
        v
        for k, v in parse_qsl(query.decode("latin-1"), keep_blank_values=True)
        if k == "access_token"
    ]
    if not values:
        return None
    if len(values) > 1:
        raise InvalidRequest(reason="multiple_methods")
    if not values[0]:
        raise InvalidRequest(reason="empty_token")
    return values[0]
