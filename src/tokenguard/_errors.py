"""The errors tokenguard raises, one hierarchy, each mapped to an RFC 6750 answer.

    TokenGuardError
    ├── InvalidRequest       400 invalid_request     the request itself is malformed
    ├── InvalidToken         401 invalid_token       the token is not acceptable (``reason``)
    ├── InsufficientScope    403 insufficient_scope  valid token, missing role/scope/caller
    ├── MissingToken         401 (no error code)     no bearer credentials at all
    └── KeysUnavailable      503 (no RFC 6750 code)  the issuer's keys cannot be had
        └── TenantUnavailable  503                    the ``tenants`` callable failed or timed out

The 503 branch is "not the caller's fault, try again later": :class:`TenantUnavailable`
is a :class:`KeysUnavailable` so that every layer (responses, ``Retry-After``, websocket
close codes, an app's own ``except KeysUnavailable``) treats both outages alike.

``error_description`` values come from a fixed vocabulary (:data:`DESCRIPTIONS`):
nothing from the token or the request is ever echoed back.
"""

from __future__ import annotations

from typing import ClassVar, Final, Literal

__all__ = [
    "DESCRIPTIONS",
    "InsufficientScope",
    "InvalidRequest",
    "InvalidToken",
    "KeysUnavailable",
    "MissingToken",
    "Reason",
    "TenantUnavailable",
    "TokenGuardError",
]

Reason = Literal[
    "missing_token",
    "query_token_not_allowed",
    "empty_token",
    "multiple_authorization",
    "multiple_methods",
    "bad_header",
    "malformed",
    "token_too_large",
    "algorithm_not_allowed",
    "unknown_key",
    "bad_signature",
    "expired",
    "not_yet_valid",
    "issued_in_future",
    "wrong_audience",
    "wrong_issuer",
    "key_issuer_mismatch",
    "wrong_tenant",
    "wrong_type",
    "missing_claim",
    "invalid_claim",
    "no_permissions",
    "unsupported_critical",
    "missing_role",
    "missing_scope",
    "caller_not_allowed",
    "guest_not_allowed",
    "keys_unavailable",
    "tenant_unavailable",
]
"""Why a request was refused: the vocabulary of ``TokenGuardError.reason``."""

#: Fixed, safe ``error_description`` per reason (printable ASCII, no ``"`` or ``\``).
DESCRIPTIONS: Final[dict[str, str]] = {
    # MissingToken
    "missing_token": "A bearer token is required",
    # InvalidRequest
    "query_token_not_allowed": "Tokens in the query string are not accepted",
    "empty_token": "The bearer token is empty",
    "multiple_authorization": "More than one Authorization header",
    "multiple_methods": "The token was sent in more than one way",
    "bad_header": "The Authorization header is malformed",
    # InvalidToken
    "malformed": "The token is malformed",
    "token_too_large": "The token is too large",
    "algorithm_not_allowed": "The token algorithm is not allowed",
    "unknown_key": "The token signing key is unknown",
    "bad_signature": "The token signature is invalid",
    "expired": "The token is expired",
    "not_yet_valid": "The token is not valid yet",
    "issued_in_future": "The token was issued in the future",
    "wrong_audience": "The token audience is not accepted",
    "wrong_issuer": "The token issuer is not accepted",
    "key_issuer_mismatch": "The token issuer does not match its signing key",
    "wrong_tenant": "The token tenant is not accepted",
    "wrong_type": "The token type is not accepted",
    "missing_claim": "The token lacks a required claim",
    "invalid_claim": "A token claim has an invalid value",
    "no_permissions": "The token carries neither roles nor scopes",
    "unsupported_critical": "The token has an unsupported critical header",
    # InsufficientScope
    "missing_role": "The caller lacks a required role",
    "missing_scope": "The caller lacks a required scope",
    "caller_not_allowed": "The caller is not allowed",
    "guest_not_allowed": "Guest users are not allowed",
    # KeysUnavailable
    "keys_unavailable": "The token signing keys are unavailable",
    # TenantUnavailable
    "tenant_unavailable": "The token tenant cannot be checked now",
}


class TokenGuardError(Exception):
    """Base class of every error tokenguard raises."""

    status_code: ClassVar[int] = 500
    error: ClassVar[str | None] = None
    default_reason: ClassVar[Reason] = "malformed"

    def __init__(self, message: str | None = None, *, reason: Reason | None = None) -> None:
        self.reason: Reason = reason or self.default_reason
        description = DESCRIPTIONS.get(self.reason)
        if description is None:
            raise ValueError(f"unknown rejection reason {self.reason!r}")
        self.description = description
        #: Context for logs, filled in by the validator; never sent to the caller.
        self.issuer: str | None = None
        self.kid: str | None = None
        self.fingerprint: str | None = None
        #: Set once the rejection has been logged, so that no layer logs it twice.
        self.logged = False
        super().__init__(message or self.description)


class InvalidRequest(TokenGuardError):
    """The request is malformed (RFC 6750 section 3.1 ``invalid_request``)."""

    status_code = 400
    error = "invalid_request"
    default_reason = "bad_header"


class InvalidToken(TokenGuardError):
    """The token is expired, forged, malformed or not meant for us (``invalid_token``)."""

    status_code = 401
    error = "invalid_token"
    default_reason = "malformed"


class InsufficientScope(TokenGuardError):
    """The token is valid but the caller lacks what the route requires (``insufficient_scope``)."""

    status_code = 403
    error = "insufficient_scope"
    default_reason = "missing_role"

    def __init__(
        self,
        message: str | None = None,
        *,
        reason: Reason | None = None,
        required: frozenset[str] = frozenset(),
    ) -> None:
        super().__init__(message, reason=reason)
        #: What the caller needs, every one of it (the challenge's ``scope=``); empty
        #: when one of several would do.
        self.required = required


class MissingToken(TokenGuardError):
    """No bearer credentials were presented (RFC 6750 section 3: no error code)."""

    status_code = 401
    error = None
    default_reason = "missing_token"


class KeysUnavailable(TokenGuardError):
    """The issuer's signing keys cannot be had; not the caller's fault (503)."""

    status_code = 503
    error = None
    default_reason: ClassVar[Reason] = "keys_unavailable"

    def __init__(
        self, message: str | None = None, *, reason: Reason | None = None, retry_after: int = 30
    ) -> None:
        super().__init__(message, reason=reason)
        self.retry_after = retry_after


class TenantUnavailable(KeysUnavailable):
    """The ``tenants`` decision for a token's tenant cannot be had now (503; not a denial)."""

    default_reason: ClassVar[Reason] = "tenant_unavailable"
