"""Errors of the toy services: one exception, and each service's dialect to word and render it.

A handler raises :class:`ServiceError` (or a service's subclass); :func:`protected_app`
renders it, tokenguard's rejections, unrouted requests and unexpected failures through the
service's :class:`Dialect`: Key Vault answers JSON ``{"error": {...}}``, Storage XML
``<Error>`` with ``x-ms-error-code``.
"""

from __future__ import annotations

import abc

from starlette.requests import HTTPConnection
from starlette.responses import Response

from tokenguard import Identity, TokenGuardError

__all__ = ["Dialect", "ServiceError"]


class ServiceError(Exception):
    """An answer other than success: HTTP ``status``, the service's error ``code``, a message.

    ``headers`` go out with the answer; ``inner`` (Key Vault's ``innererror.code``) and
    ``detail`` (Storage's ``AuthenticationErrorDetail``) where the service has them.
    """

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        inner: str | None = None,
        detail: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.inner = inner
        self.detail = detail
        self.headers = dict(headers or {})


class Dialect(abc.ABC):
    """How one toy service words and renders its errors."""

    @abc.abstractmethod
    def challenge(self, authority: str, audience: str) -> dict[str, str]:
        """The ``WWW-Authenticate`` parameters naming the tenant's ``authority`` URL and
        the resource (``audience``) a client must get a token for."""

    @abc.abstractmethod
    def render(self, error: ServiceError, conn: HTTPConnection) -> Response:
        """The response carrying ``error`` (with its headers)."""

    @abc.abstractmethod
    def token_error(self, exc: TokenGuardError) -> ServiceError:
        """The answer to a tokenguard rejection; tokenguard's headers are added to it."""

    @abc.abstractmethod
    def route_error(self, method: str, status: int, detail: str) -> ServiceError:
        """The answer when routing fails: no such path (404), method (405), or other."""

    @abc.abstractmethod
    def server_error(self) -> ServiceError:
        """The answer to an unexpected failure (500; the traceback goes to the log)."""

    @abc.abstractmethod
    def forbidden(self, identity: Identity, action: str, scope: str) -> ServiceError:
        """403 for a caller without a role for ``action`` at ``scope`` (the RFC 6750
        challenge header is added to it)."""
