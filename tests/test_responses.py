"""Ready-made RFC 6750 answers: built once per error, bounded, identical to a fresh build."""

from __future__ import annotations

import pytest
from starlette.types import Message

from tokenguard import (
    InsufficientScope,
    InvalidToken,
    KeysUnavailable,
    MissingToken,
    error_response,
)
from tokenguard._responses import ErrorAnswers, challenge, websocket_close_code


def test_answers_match_a_fresh_response_and_are_reused() -> None:
    answers = ErrorAnswers("api", {"resource": "https://vault.azure.net"})
    error = InvalidToken(reason="expired")
    status, headers, body = answers.answer(error)
    fresh = error_response(error, "api", {"resource": "https://vault.azure.net"})
    assert (status, headers, body) == (fresh.status_code, fresh.raw_headers, bytes(fresh.body))
    assert answers.answer(InvalidToken(reason="expired"))[1] is headers
    denied = answers.answer(InsufficientScope(reason="missing_role", required=frozenset({"R"})))
    assert (
        b"www-authenticate",
        b'Bearer realm="api", resource="https://vault.azure.net", '
        b'error="insufficient_scope", error_description="The caller lacks a required role", '
        b'scope="R"',
    ) in denied[1]


def test_answers_are_bounded() -> None:
    answers = ErrorAnswers(None, None)
    for seconds in range(1, 400):
        status, headers, _ = answers.answer(KeysUnavailable(retry_after=seconds))
        assert status == 503
        assert (b"retry-after", str(seconds).encode()) in headers
    assert len(answers._answers) == 256


@pytest.mark.anyio
async def test_send_writes_two_asgi_messages() -> None:
    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    await ErrorAnswers("r", None).send(InvalidToken(reason="bad_signature"), send)
    assert [m["type"] for m in sent] == ["http.response.start", "http.response.body"]
    assert sent[0]["status"] == 401
    assert sent[1]["body"] == (
        b'{"error":"invalid_token","error_description":"The token signature is invalid"}'
    )


def test_websocket_close_codes() -> None:
    assert websocket_close_code(KeysUnavailable()) == 1013
    for exc in (MissingToken(), InvalidToken(), InsufficientScope()):
        assert websocket_close_code(exc) == 1008


def test_scope_parameter_lists_only_scope_tokens() -> None:
    from tokenguard import InsufficientScope

    needed = InsufficientScope(reason="missing_scope", required=frozenset({"b.write", "a.read"}))
    assert challenge(needed).endswith(', scope="a.read b.write"')
    spaced = InsufficientScope(required=frozenset({"Key Vault Secrets User"}))
    assert "scope=" not in challenge(spaced)
