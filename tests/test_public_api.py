"""The public namespace is curated and sorted (as httpx asserts its own)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, get_args

import pytest

import tokenguard
import tokenguard.fastapi
import tokenguard.metrics
import tokenguard.readiness
import tokenguard.testing

ISSUER = "https://issuer.example/"


def test_public_names() -> None:
    assert tokenguard.__all__ == sorted(tokenguard.__all__, key=lambda n: (not n.isupper(), n))
    for name in tokenguard.__all__:
        assert hasattr(tokenguard, name), name
    assert {"Issuer", "TokenValidator", "TokenGuardMiddleware", "Identity"} <= set(
        tokenguard.__all__
    )


PINNED = Path(__file__).parent / "data" / "public_api.txt"
MODULES = (
    tokenguard,
    tokenguard.fastapi,
    tokenguard.testing,
    tokenguard.readiness,
    tokenguard.metrics,
)


def pinned_names() -> dict[str, list[str]]:
    """``tests/data/public_api.txt``: a ``[module]`` line, then its names, one a line."""
    names: dict[str, list[str]] = {}
    for line in PINNED.read_text().splitlines():
        if line.startswith("["):
            names[line.strip("[]")] = section = []
        elif line and not line.startswith("#"):
            section.append(line)
    return names


def test_public_names_are_pinned() -> None:
    # As httpx pins its names: adding, renaming or removing one is a decision, made by
    # editing the snapshot in the same change.
    assert {m.__name__: m.__all__ for m in MODULES} == pinned_names()
    for module in MODULES:
        for name in module.__all__:
            assert hasattr(module, name), (module.__name__, name)


def test_pinned_snapshot_is_read() -> None:
    pinned = pinned_names()
    assert list(pinned) == [m.__name__ for m in MODULES]
    assert "TokenGuardMiddleware" in pinned["tokenguard"]
    assert pinned["tokenguard.fastapi"][-1] == "add_openapi_responses"


def test_validator_methods_are_pinned() -> None:
    public = {n for n in dir(tokenguard.TokenValidator) if not n.startswith("_")}
    assert public == {
        "aclose",
        "cached",
        "is_ready",
        "issuers",
        "status",
        "validate",
        "validate_credentials",
        "warm_up",
    }
    # Attributes set per instance (public: tests and integrations read or swap them).
    validator = tokenguard.TokenValidator(
        [tokenguard.Issuer(issuer=ISSUER, audiences=["api"], jwks_uri=ISSUER + "keys")]
    )
    attributes = {n for n in vars(validator) if not n.startswith("_")}
    assert attributes == {"cache", "clock", "max_token_bytes", "observer", "reject_id_tokens"}


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
