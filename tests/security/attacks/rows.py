"""The row types of the attack catalogue and the building blocks several families share.

Each family module under :mod:`tests.security.attacks` lists its rows as ``ROWS``;
:mod:`tests.security.catalogue` assembles them into one table.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from ..kit import NOW, TEMPLATE_AUDIENCE, Kit, b64

Headers = tuple[tuple[bytes, bytes], ...]


@dataclass(frozen=True)
class Probe:
    """What an attack sends.

    ``token`` goes to ``TokenValidator.validate``; ``None`` marks a request-level attack
    that the middleware must refuse before any token reaches the validator. The HTTP
    request carries ``headers`` (default: ``Authorization: Bearer <token>``), ``query``
    and ``body``. ``prime`` tokens are validated beforehand (they must pass).
    """

    token: str | None
    headers: Headers | None = None
    query: str = ""
    method: str = "GET"
    body: bytes = b""
    #: Genuine tokens validated first, so the verified-token cache holds them.
    prime: tuple[str, ...] = ()

    def request_headers(self) -> Headers:
        """The headers the HTTP request carries."""
        if self.headers is not None:
            return self.headers
        assert self.token is not None
        return ((b"authorization", b"Bearer " + self.token.encode("latin-1")),)


@dataclass(frozen=True)
class Expect:
    """The answer: HTTP status, RFC 6750 ``error`` code and tokenguard ``reason``."""

    status: int
    error: str | None
    reason: str | None

    def __str__(self) -> str:
        if self.status == 200:
            return "200 accepted"
        return f"{self.status} {self.error or '(no code)'} `{self.reason}`"


@dataclass(frozen=True)
class Attack:
    """One row of the catalogue."""

    id: str
    area: str
    source: str
    title: str
    make: Callable[[Kit], Probe]
    expect: Expect


ACCEPTED: Final = Expect(200, None, None)
NO_CREDENTIALS: Final = Expect(401, None, "missing_token")


def invalid(reason: str) -> Expect:
    """401 ``invalid_token`` with ``reason``."""
    return Expect(401, "invalid_token", reason)


def bad_request(reason: str) -> Expect:
    """400 ``invalid_request`` with ``reason``."""
    return Expect(400, "invalid_request", reason)


def bearer(token: str) -> Probe:
    """A token sent the normal way."""
    return Probe(token)


def raw_bearer(token: bytes, scheme: bytes = b"Bearer") -> Probe:
    """A token sent as raw header bytes; the validator gets them decoded as Latin-1."""
    return Probe(token.decode("latin-1"), ((b"authorization", scheme + b" " + token),))


def auth(*values: bytes, query: str = "") -> Probe:
    """A request-level probe with raw ``Authorization`` values."""
    return Probe(None, tuple((b"authorization", v) for v in values), query=query)


# -- building blocks shared by several families ----------------------------------


def with_header(token: str, **changes: Any) -> str:
    """Re-encode a token's header with ``changes``, keeping payload and signature."""
    h64, rest = token.split(".", 1)
    header = json.loads(base64.urlsafe_b64decode(h64 + "=" * (-len(h64) % 4)))
    header.update(changes)
    return b64(json.dumps(header, separators=(",", ":")).encode()) + "." + rest


def without_kid(header: dict[str, Any]) -> dict[str, Any]:
    """A header without its kid."""
    return {name: value for name, value in header.items() if name != "kid"}


def segments(token: str) -> list[str]:
    """The dot-separated parts of a token."""
    return token.split(".")


def template_token(k: Kit, *, tid: str, iss: str | None = None, kid: str | None = None) -> str:
    """A v2 token of the multi-tenant issuer, signed by its key ``kid`` (default: ``template``)."""
    body = k.multi.claims(TEMPLATE_AUDIENCE, tenant_id=tid, version="2.0", roles=["Tasks.Read"])
    if iss is not None:
        body["iss"] = iss
    kid = kid or k.multi.signing_kid
    return k.signed(k.header(kid), body, key=k.private(kid, k.multi))


def deep_json(depth: int) -> bytes:
    return b'{"exp":%d,"x":' % (NOW + 3600) + b"[" * depth + b"]" * depth + b"}"
