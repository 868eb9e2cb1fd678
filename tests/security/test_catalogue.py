"""Every catalogue row, through ``TokenValidator.validate`` and through the HTTP middleware.

For each row: the validator raises the expected error (or accepts the control rows);
the middleware answers with exactly the expected status, fixed-vocabulary body and
challenge, echoes none of the attacker's input, and no validator ever requested
anything but the trusted issuers' metadata. Request-level rows must be refused
before any token reaches the validator.
"""

from __future__ import annotations

import logging
import re
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from tokenguard import Identity, InvalidToken, TokenGuardMiddleware, TokenValidator, get_identity
from tokenguard._cache import CachedToken
from tokenguard._errors import DESCRIPTIONS

from .catalogue import ATTACKS, DOCUMENT, Attack, Expect, Probe, document_block, markdown_table
from .kit import Kit

pytestmark = pytest.mark.anyio

_ALLOWED_HEADERS = frozenset({"content-type", "content-length", "www-authenticate"})
_CHUNK = re.compile(rb"[A-Za-z0-9_\-]{12,}")


class CountingValidator(TokenValidator):
    """Counts every time the middleware hands the validator a bearer token."""

    consulted = 0

    async def validate_credentials(self, raw: bytes) -> tuple[Identity, CachedToken | None]:
        self.consulted += 1
        return await super().validate_credentials(raw)


async def whoami(request: Request) -> JSONResponse:
    identity = get_identity(request)
    assert identity is not None
    return JSONResponse({"kind": identity.kind, "audience": identity.audience})


def protected(validator: TokenValidator) -> Starlette:
    return Starlette(
        routes=[Route("/", whoami, methods=["GET", "POST"])],
        middleware=[Middleware(TokenGuardMiddleware, validator=validator, warm_up=False)],
    )


def expected_challenge(expect: Expect) -> str:
    if expect.error is None:
        return 'Bearer realm="tokenguard"'
    assert expect.reason is not None
    return (
        f'Bearer realm="tokenguard", error="{expect.error}", '
        f'error_description="{DESCRIPTIONS[expect.reason]}"'
    )


def attacker_chunks(probe: Probe) -> set[bytes]:
    """Distinctive pieces of everything the attacker sent."""
    sent = [v for _, v in probe.request_headers()] + [probe.query.encode(), probe.body]
    if probe.token is not None:
        sent.append(probe.token.encode("utf-8", "surrogatepass"))
    return {chunk for data in sent for chunk in _CHUNK.findall(data[:100_000])}


def check_logs(records: list[logging.LogRecord], probe: Probe) -> None:
    """No log line carries the token; logged kids are short printable ASCII."""
    secrets = [c.decode() for c in attacker_chunks(probe) if len(c) >= 24]
    for record in records:
        text = record.getMessage() + " " + " ".join(map(str, vars(record).values()))
        for secret in secrets:
            assert secret not in text, f"log line {record.getMessage()!r} leaks attacker input"
        kid: Any = getattr(record, "kid", None)
        if kid is not None:
            assert len(kid) <= 400
            assert all(" " <= c <= "~" for c in kid), kid


async def through_validator(kit: Kit, attack: Attack, probe: Probe) -> None:
    validator = kit.validator()
    await validator.warm_up()
    for genuine in probe.prime:
        await validator.validate(genuine)
    kit.requests.clear()
    token = probe.token
    assert token is not None
    try:
        if attack.expect.status == 200:
            identity = await validator.validate(token)
            assert identity.expires_at > 0
        else:
            assert attack.expect.error == "invalid_token", "a token row must be a token error"
            with pytest.raises(InvalidToken) as info:
                await validator.validate(token)
            assert info.value.reason == attack.expect.reason
            assert info.value.description == DESCRIPTIONS[info.value.reason]
            assert token not in str(info.value)
    finally:
        await validator.aclose()
    assert kit.stray_requests() == []


async def through_middleware(kit: Kit, attack: Attack, probe: Probe) -> None:
    validator = kit.make_validator(CountingValidator)
    await validator.warm_up()
    kit.requests.clear()
    transport = httpx.ASGITransport(app=protected(validator))
    url = "/?" + probe.query if probe.query else "/"
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        for genuine in probe.prime:
            primed = await client.get("/", headers={"authorization": f"Bearer {genuine}"})
            assert primed.status_code == 200
        validator.consulted = 0
        response = await client.request(
            probe.method, url, headers=list(probe.request_headers()), content=probe.body
        )
    await validator.aclose()
    expect = attack.expect
    assert response.status_code == expect.status, response.text
    assert kit.stray_requests() == []
    if probe.token is None:
        assert validator.consulted == 0, "a request-level attack reached the validator"
    if expect.status == 200:
        assert set(response.json()) == {"kind", "audience"}
        return
    assert expect.reason is not None
    assert response.json() == {
        "error": expect.error or "unauthenticated",
        "error_description": DESCRIPTIONS[expect.reason],
    }
    assert set(response.headers) <= _ALLOWED_HEADERS
    assert response.headers["content-type"] == "application/json"
    assert response.headers["www-authenticate"] == expected_challenge(expect)
    raw = response.content + b"".join(v for _, v in response.headers.raw)
    echoed = [c for c in attacker_chunks(probe) if c in raw]
    assert echoed == [], f"response echoes attacker input: {echoed[:3]!r}"


@pytest.mark.parametrize("attack", ATTACKS, ids=[a.id for a in ATTACKS])
async def test_attack(kit: Kit, attack: Attack, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="tokenguard")
    probe = attack.make(kit)
    if probe.token is not None:
        await through_validator(kit, attack, probe)
    await through_middleware(kit, attack, probe)
    check_logs(caplog.records, probe)


def test_catalogue_is_large_and_covers_every_area() -> None:
    areas = {a.area for a in ATTACKS}
    assert areas == {
        "request",
        "structure",
        "algorithm",
        "key-source",
        "kid",
        "claims",
        "cache",
        "dos",
    }
    assert len(ATTACKS) >= 60
    assert len({a.id for a in ATTACKS}) == len(ATTACKS)
    assert all(a.source and a.title for a in ATTACKS)


def test_security_document_lists_the_catalogue() -> None:
    block = document_block(DOCUMENT.read_text(encoding="utf-8"))
    assert block == markdown_table(), "run: python -m tests.security.catalogue --write"


async def test_the_counting_validator_sees_what_the_middleware_hands_over(kit: Kit) -> None:
    # The control for "a request-level attack reached the validator": a genuine token
    # is handed over once; repeated, it is answered from the cache before that point.
    validator = kit.make_validator(CountingValidator)
    token = kit.valid()
    transport = httpx.ASGITransport(app=protected(validator))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        counts = []
        for _ in range(2):
            response = await client.get("/", headers={"authorization": f"Bearer {token}"})
            assert response.status_code == 200
            counts.append(validator.consulted)
        response = await client.get("/", headers={"authorization": "Bearer not-a-token"})
        assert response.status_code == 401
        counts.append(validator.consulted)
    await validator.aclose()
    assert counts == [1, 1, 2]
