"""Claim checks of a verified token, one function per claim family (as PyJWT keeps them).

Times (``exp``, ``nbf``, ``iat`` with leeway), audience, required claims, ID-token
claims, the signing key's issuer against ``iss``/``tid``, and permissions (roles or
scopes). Each raises :class:`InvalidToken` with its reason; the validator's pipeline
calls them in order, once per new token, never on a cache hit.
"""

from __future__ import annotations

import math
import re
from collections.abc import Collection
from typing import Any, Final

from ._config import TENANT_PLACEHOLDER
from ._errors import InvalidToken
from ._identity import Identity

__all__ = [
    "TENANT_ID",
    "check_audience",
    "check_key_issuer",
    "check_not_id_token",
    "check_permissions",
    "check_required",
    "check_times",
]

#: A plain tenant id (a GUID, or a domain name): what ``tid`` may put in an issuer.
TENANT_ID: Final = re.compile(r"[A-Za-z0-9._-]{1,64}")
#: Claims only OpenID Connect ID tokens carry; an ID token is not an access token.
#: A tuple: three lookups in the claims, where ``frozenset.isdisjoint`` walks every claim.
_ID_TOKEN_CLAIMS: Final = ("nonce", "at_hash", "c_hash")
#: JSON numbers: ``type(x) in _NUMBER`` refuses bool (a subclass of int) and strings.
_NUMBER: Final = (int, float)


def _seconds(value: float) -> float:
    """A claim's time as a float; integers beyond float range become infinities."""
    try:
        return float(value)
    except OverflowError:  # a JSON integer such as 10**400
        return math.inf if value > 0 else -math.inf


def check_times(claims: dict[str, Any], now: float, leeway: float) -> tuple[float, float]:
    """Check ``exp``, ``nbf`` and ``iat`` at ``now``; return the window in which the token
    stays acceptable, leeway included (floats: the cache compares them with the clock's
    float on every hit)."""
    exp = claims.get("exp")
    if exp is None:
        raise InvalidToken("exp missing", reason="missing_claim")
    if type(exp) not in _NUMBER:  # not bool, not a string of digits
        raise InvalidToken("exp is not a number", reason="invalid_claim")
    # The leeway moves the clock, never the claim: a claim of 10**400 plus a float
    # leeway would overflow, while comparing an int with a float is exact.
    if exp <= now - leeway:
        raise InvalidToken("token expired", reason="expired")
    nbf = claims.get("nbf")
    not_before = -math.inf
    if nbf is not None:
        if type(nbf) not in _NUMBER:
            raise InvalidToken("nbf is not a number", reason="invalid_claim")
        not_before = _seconds(nbf) - leeway
        if not_before > now:
            raise InvalidToken("token not yet valid", reason="not_yet_valid")
    iat = claims.get("iat")
    if iat is not None:
        if type(iat) not in _NUMBER:
            raise InvalidToken("iat is not a number", reason="invalid_claim")
        if iat > now + leeway:
            raise InvalidToken("token issued in the future", reason="issued_in_future")
    return _seconds(exp) + leeway, not_before


def check_audience(aud: object, audiences: frozenset[str]) -> str:
    """The accepted audience the token's ``aud`` (a string or a list of strings) names."""
    if type(aud) is str and aud in audiences:
        return aud
    if aud is None:
        raise InvalidToken("aud missing", reason="missing_claim")
    if isinstance(aud, list):
        for value in aud:
            if not isinstance(value, str):
                raise InvalidToken("aud has a non-string member", reason="invalid_claim")
        for value in aud:
            if value in audiences:
                return str(value)
    elif not isinstance(aud, str):
        raise InvalidToken("aud is not a string or list", reason="invalid_claim")
    raise InvalidToken("audience not accepted", reason="wrong_audience")


def check_required(claims: dict[str, Any], required: Collection[str]) -> None:
    """Every claim the issuer's configuration requires is present."""
    for name in required:
        if name not in claims:
            raise InvalidToken("required claim missing", reason="missing_claim")


def check_not_id_token(claims: dict[str, Any]) -> None:
    """The token carries none of the claims only an OpenID Connect ID token carries."""
    for name in _ID_TOKEN_CLAIMS:
        if name in claims:
            raise InvalidToken("an ID token is not an access token", reason="wrong_type")


def check_key_issuer(key_issuer: str, claims: dict[str, Any]) -> None:
    """The token's ``iss`` must be its signing key's ``issuer`` (IDX40005).

    A key issuer with ``{tenantid}`` takes the token's ``tid``, which must then be there
    and be a plain tenant id.
    """
    expected = key_issuer
    if TENANT_PLACEHOLDER in key_issuer:
        tid = claims.get("tid")
        if tid is None:
            raise InvalidToken("tid missing for a tenant-template key", reason="missing_claim")
        if not (type(tid) is str and TENANT_ID.fullmatch(tid)):
            raise InvalidToken("tid is not a tenant id", reason="invalid_claim")
        expected = key_issuer.replace(TENANT_PLACEHOLDER, tid)
    if claims.get("iss") != expected:
        raise InvalidToken("token issuer is not its key's issuer", reason="key_issuer_mismatch")


def check_permissions(identity: Identity) -> None:
    """The identity is granted some role or scope (IDW10201).

    Judged on the identity, so "grants something" means exactly what the identity's
    roles and scopes hold.
    """
    if not (identity.roles or identity.scopes):
        raise InvalidToken("token has neither roles nor scopes", reason="no_permissions")
