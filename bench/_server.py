"""``python -m bench._server FD MODE``: serve the bench route with uvicorn on an inherited socket.

``MODE`` is ``open`` (no auth) or ``tokenguard``; the latter trusts the issuer named by
``BENCH_ISSUER`` / ``BENCH_DISCOVERY_URL`` (the bench process serves it on loopback)
with a refresh cooldown of ``BENCH_COOLDOWN`` seconds.
"""

from __future__ import annotations

import os
import socket
import sys
from collections.abc import Sequence

import uvicorn
from starlette.types import ASGIApp

from tokenguard import Issuer, TokenValidator

from ._tokens import AUDIENCE
from .apps import starlette_app

__all__ = ["create_app", "main"]


def create_app(mode: str) -> ASGIApp:
    """The Starlette route, bare or behind ``TokenGuardMiddleware`` (keys warmed at startup)."""
    if mode == "open":
        return starlette_app()
    if mode != "tokenguard":
        raise SystemExit(f"unknown mode {mode!r}")
    issuer = Issuer(
        issuer=os.environ["BENCH_ISSUER"],
        audiences=(AUDIENCE,),
        discovery_url=os.environ["BENCH_DISCOVERY_URL"],
        refresh_cooldown=float(os.environ.get("BENCH_COOLDOWN", "30")),
    )
    return starlette_app(TokenValidator([issuer]))


def main(argv: Sequence[str]) -> None:
    """Serve until SIGTERM/SIGINT."""
    fd, mode = int(argv[0]), argv[1]
    sock = socket.socket(fileno=fd)
    config = uvicorn.Config(create_app(mode), lifespan="on", access_log=False, log_level="warning")
    uvicorn.Server(config).run(sockets=[sock])


if __name__ == "__main__":
    main(sys.argv[1:])
