"""tokenguard: validate Azure managed-identity and OIDC bearer tokens in Starlette/FastAPI.

The flow of a request, module by module::

    _middleware  Authorization header -> token          (RFC 6750 answers: _responses)
    _token       token -> header, claims, signature     (strict compact JWS parsing)
    _keyset      issuer -> keys                         (discovery + JWKS: _fetch, _keys)
    _validator   signature + claims -> Identity         (verified-token cache: _cache)
    _claims      times, audience, key issuer, roles...  (one check per claim family)
    _identity    Identity, TokenGuardUser               (the contract)
    _authz       Requirement, requires                  (roles, scopes, caller allow-lists)
    _errors      TokenGuardError and its branches       (the contract)
"""

from __future__ import annotations

from importlib import metadata as _metadata

from ._authz import IDENTITY_SCOPE_KEY, Requirement, get_identity, require_identity, requires
from ._config import (
    DEFAULT_ALGORITHMS,
    DEFAULT_FETCH_TIMEOUT,
    DEFAULT_LEEWAY,
    DEFAULT_MAX_STALE,
    DEFAULT_REFRESH_COOLDOWN,
    Issuer,
)
from ._errors import (
    InsufficientScope,
    InvalidRequest,
    InvalidToken,
    KeysUnavailable,
    MissingToken,
    TenantUnavailable,
    TokenGuardError,
)
from ._identity import Identity, IdentityKind, TokenGuardUser
from ._keyset import KeySetStatus
from ._middleware import ErrorRenderer, TokenGuardMiddleware
from ._responses import challenge, error_response
from ._validator import TokenValidator, ValidationObserver, fingerprint

try:
    # The installed distribution's version: one number, kept in pyproject.toml.
    __version__ = _metadata.version("tokenguard-asgi")
except _metadata.PackageNotFoundError:  # a source tree on sys.path, not installed
    __version__ = "0.1.0"

__all__ = [
    "DEFAULT_ALGORITHMS",
    "DEFAULT_FETCH_TIMEOUT",
    "DEFAULT_LEEWAY",
    "DEFAULT_MAX_STALE",
    "DEFAULT_REFRESH_COOLDOWN",
    "IDENTITY_SCOPE_KEY",
    "ErrorRenderer",
    "Identity",
    "IdentityKind",
    "InsufficientScope",
    "InvalidRequest",
    "InvalidToken",
    "Issuer",
    "KeySetStatus",
    "KeysUnavailable",
    "MissingToken",
    "Requirement",
    "TenantUnavailable",
    "TokenGuardError",
    "TokenGuardMiddleware",
    "TokenGuardUser",
    "TokenValidator",
    "ValidationObserver",
    "__version__",
    "challenge",
    "error_response",
    "fingerprint",
    "get_identity",
    "require_identity",
    "requires",
]
