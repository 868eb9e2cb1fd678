"""The public namespace is curated and sorted (as httpx asserts its own)."""

from __future__ import annotations

from typing import Any, get_args

import pytest

import tokenguard


def test_public_names() -> None:
    assert tokenguard.__all__ == sorted(tokenguard.__all__, key=lambda n: (not n.isupper(), n))
    for name in tokenguard.__all__:
        assert hasattr(tokenguard, name), name
    assert {"Issuer", "TokenValidator", "TokenGuardMiddleware", "Identity"} <= set(
        tokenguard.__all__
    )


def test_error_hierarchy() -> None:
    for cls in (
        tokenguard.InvalidRequest,
        tokenguard.InvalidToken,
        tokenguard.InsufficientScope,
        tokenguard.KeysUnavailable,
        tokenguard.MissingToken,
    ):
        assert issubclass(cls, tokenguard.TokenGuardError)
    assert (tokenguard.InvalidRequest.status_code, tokenguard.InvalidRequest.error) == (
        400,
        "invalid_request",
    )
    assert (tokenguard.InvalidToken.status_code, tokenguard.InvalidToken.error) == (
        401,
        "invalid_token",
    )
    assert tokenguard.InsufficientScope.status_code == 403
    assert (tokenguard.KeysUnavailable.status_code, tokenguard.KeysUnavailable.error) == (503, None)
    assert tokenguard.InvalidToken().description == "The token is malformed"


def test_reasons_are_the_described_ones() -> None:
    from tokenguard._errors import DESCRIPTIONS, Reason

    assert get_args(Reason) == tuple(DESCRIPTIONS)
    for reason in get_args(Reason):
        assert tokenguard.TokenGuardError(reason=reason).description == DESCRIPTIONS[reason]


def test_unknown_reason_is_refused() -> None:
    unknown: Any = "no-such-reason"
    with pytest.raises(ValueError, match="no-such-reason"):
        tokenguard.InvalidToken(reason=unknown)
    with pytest.raises(ValueError, match="no-such-reason"):
        tokenguard.InsufficientScope(reason=unknown, required=frozenset({"r"}))


def test_descriptions_are_safe_for_headers() -> None:
    from tokenguard._errors import DESCRIPTIONS

    for text in DESCRIPTIONS.values():
        assert all(" " <= c <= "~" and c not in '"\\' for c in text), text


def test_challenge_quotes_parameters() -> None:
    error = tokenguard.MissingToken()
    assert tokenguard.challenge(error, realm=None) == "Bearer"
    assert tokenguard.challenge(error, realm='a"b\\c\n') == 'Bearer realm="abc"'
