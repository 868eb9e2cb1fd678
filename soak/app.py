"""The protected app the soak test serves with uvicorn, in its own process.

``python -m soak.app --fd N --issuer ISS --discovery-url URL [--max-stale S]``
serves ``GET /secret`` (needs role ``Secrets.Read``) and ``GET /healthz`` (open) on
the already bound listening socket ``N`` handed over by the soak runner.
"""

from __future__ import annotations

import argparse
import logging
import socket

import uvicorn
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route

from tokenguard import Issuer, Requirement, TokenGuardMiddleware, TokenValidator, get_identity

VAULT = "https://vault.azure.net"
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message"}


class ExtrasFormatter(logging.Formatter):
    """Appends the structured ``extra`` fields, so the soak can check them for tokens."""

    def format(self, record: logging.LogRecord) -> str:
        extras = {k: v for k, v in vars(record).items() if k not in _STANDARD}
        text = super().format(record)
        return f"{text} {extras}" if extras else text


async def secret(request: Request) -> JSONResponse:
    identity = get_identity(request)
    assert identity is not None
    return JSONResponse({"value": "s3cr3t", "caller": identity.object_id})


async def healthz(request: Request) -> PlainTextResponse:
    return PlainTextResponse("ok")


def build(issuer: str, discovery_url: str, max_stale: float, min_ttl: float) -> Starlette:
    """The app: short key lifetimes so a few-minute soak sees many refreshes."""
    config = Issuer(
        issuer=issuer,
        audiences=(VAULT,),
        discovery_url=discovery_url,
        min_cache_ttl=min_ttl,
        refresh_cooldown=5.0,
        max_stale=max_stale,
        fetch_timeout=2.0,
        error_backoff=2.0,
    )
    return Starlette(
        routes=[Route("/secret", secret), Route("/healthz", healthz)],
        middleware=[
            Middleware(
                TokenGuardMiddleware,
                validator=TokenValidator([config]),
                exclude_paths=["/healthz"],
                require=Requirement(roles=["Secrets.Read"]),
            )
        ],
    )


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m soak.app")
    parser.add_argument("--fd", type=int, required=True)
    parser.add_argument("--issuer", required=True)
    parser.add_argument("--discovery-url", required=True)
    parser.add_argument("--max-stale", type=float, default=3600.0)
    parser.add_argument("--min-ttl", type=float, default=5.0)
    args = parser.parse_args()
    handler = logging.StreamHandler()
    handler.setFormatter(ExtrasFormatter("%(levelname)s %(name)s %(message)s"))
    logging.basicConfig(level=logging.INFO, handlers=[handler])
    app = build(args.issuer, args.discovery_url, args.max_stale, args.min_ttl)
    # Not ``uvicorn.run(fd=...)``: that wraps the descriptor as AF_UNIX, so asyncio never
    # sets TCP_NODELAY on the connections and every response waits ~40 ms on delayed ACKs.
    sock = socket.socket(fileno=args.fd)
    config = uvicorn.Config(app, lifespan="on", access_log=False, log_level="warning")
    uvicorn.Server(config).run(sockets=[sock])


if __name__ == "__main__":
    main()
