"""Quick start: a Starlette app protected by tokenguard, poked with five tokens.

Runs with no network: the issuer is ``tokenguard.testing.LocalIssuer`` and its keys are
fetched through an in-memory transport. Prints what the app answers to each token.
"""

from __future__ import annotations

import asyncio

import httpx
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from tokenguard import Identity, TokenGuardMiddleware, get_identity
from tokenguard.testing import LocalIssuer

AUDIENCE = "https://vault.azure.net"


async def whoami(request: Request) -> JSONResponse:
    identity = get_identity(request)
    assert isinstance(identity, Identity)
    return JSONResponse({"kind": identity.kind, "name": identity.display_name})


async def healthz(request: Request) -> JSONResponse:
    return JSONResponse({"ok": True})


async def main() -> int:
    issuer = LocalIssuer()
    validator = issuer.validator([AUDIENCE])
    app = Starlette(
        routes=[Route("/whoami", whoami), Route("/healthz", healthz)],
        middleware=[
            Middleware(TokenGuardMiddleware, validator=validator, exclude_paths=["/healthz"])
        ],
    )
    cases = [
        ("valid managed-identity token", issuer.mint(AUDIENCE, roles=["Secrets.Read"])),
        ("expired token", issuer.mint(AUDIENCE, issued_at=issuer.clock() - 7200, lifetime=3600)),
        ("forged token (unknown signer)", issuer.forge(AUDIENCE)),
        ("wrong audience", issuer.mint("https://storage.azure.com/")),
        ("no token", None),
    ]
    rows = []
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://app") as client:
        for label, token in cases:
            headers = {"Authorization": f"Bearer {token}"} if token else {}
            response = await client.get("/whoami", headers=headers)
            answer = (
                response.text
                if response.status_code == 200
                else (response.headers.get("www-authenticate", ""))
            )
            rows.append((label, str(response.status_code), answer))
    await validator.aclose()
    widths = [max(len(r[i]) for r in [("case", "status", "answer"), *rows]) for i in range(3)]
    line = "  ".join(f"{{:<{w}}}" for w in widths)
    print(line.format("case", "status", "answer"))
    print(line.format(*("-" * w for w in widths)))
    for row in rows:
        print(line.format(*row))
    expected = ["200", "401", "401", "401", "401"]
    return 0 if [r[1] for r in rows] == expected else 1


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
