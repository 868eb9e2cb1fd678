"""What every case shares: counts, the local issuers, their tokens and the loopback server."""

from __future__ import annotations

import contextlib
import logging
from dataclasses import asdict, dataclass
from typing import Any

from tokenguard import TokenValidator
from tokenguard.testing import LocalIssuer

from ._asgi import LoopbackServer, loopback_socket
from ._http import ServerProcess, get_request
from ._measure import progress
from ._running import Running
from ._tokens import AUDIENCE, mint_many, shaped

__all__ = ["QUICK", "Bench", "Settings"]


@dataclass(frozen=True)
class Settings:
    """How much work each case does; the defaults finish in a few minutes on 2 cores."""

    tokens: int = 1_000  # unique tokens per algorithm (cases 1-3, 5, 6)
    rounds: int = 12  # interleaved rounds of the in-process cases
    repeat: int = 20_000  # repeated-token operations per round
    http_requests: int = 6_000  # requests per HTTP round and server
    http_seconds: float = 6.0  # time cap of one HTTP round
    http_connections: int = 8  # keep-alive connections of the load generator
    http_rounds: int = 10  # the ~2 % tokenguard costs over HTTP needs many rounds to show
    flood_rounds: int = 5  # chunks of the HTTP flood, each compared with valid traffic alone
    cold_requests: int = 1_000
    flood_tokens: int = 10_000
    flood_windows: int = 5  # cooldown windows the in-process flood is spread over
    flood_cooldown: float = 1.0  # refresh cooldown of the HTTP server in the flood case
    flood_rate: float = 1_000.0  # unknown-kid requests per second over HTTP (paced)
    valid_rate: float = 200.0  # valid requests per second served meanwhile (paced)
    memory_sizes: tuple[int, ...] = (10_000, 100_000)

    def as_dict(self) -> dict[str, Any]:
        """The settings for the results file."""
        return asdict(self)


#: Tiny counts for the smoke test: every code path, no meaningful figures.
QUICK = Settings(
    tokens=12,
    rounds=2,
    repeat=100,
    http_requests=60,
    http_seconds=2.0,
    http_connections=2,
    http_rounds=1,
    flood_rounds=1,
    cold_requests=40,
    flood_tokens=120,
    flood_windows=2,
    flood_cooldown=0.5,
    memory_sizes=(100, 400),
)


class Bench(Running):
    """Shared state: one issuer per algorithm, tokens minted on demand, and the RS256
    issuer's discovery and JWKS served on a loopback socket for clients that need a
    real HTTP fetch (fastapi-azure-auth, the uvicorn servers, the cold start)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._sock = loopback_socket()
        port = self._sock.getsockname()[1]
        progress("generating keys")
        self.issuers = {
            "RS256": LocalIssuer(base_url=f"http://127.0.0.1:{port}"),
            "ES256": LocalIssuer(key_type="EC"),
            "EdDSA": LocalIssuer(key_type="OKP"),
        }
        self.rsa = self.issuers["RS256"]
        self._server = LoopbackServer(self.rsa.asgi_app(), self._sock)
        self._tokens: dict[str, list[str]] = {}
        self._validators: list[TokenValidator] = []
        self._servers: dict[str, ServerProcess] = {}
        self._stack = contextlib.AsyncExitStack()
        #: The token of the repeated-token cases (a client reusing its token).
        self.repeated = shaped(self.rsa)
        # fastapi-azure-auth logs every rejected token with a traceback (and sometimes
        # the token itself): keep the bench output readable and token-free.
        logging.getLogger("fastapi_azure_auth").setLevel(logging.CRITICAL)

    async def start(self) -> None:
        await self._server.start()

    async def stop(self) -> None:
        await self._stack.aclose()
        for validator in self._validators:
            await validator.aclose()
        await self._server.stop()

    async def http_server(self, mode: str) -> ServerProcess:
        """The uvicorn subprocess serving the route (``open`` or ``tokenguard``), started
        on first use and stopped at exit. Its validator fetches keys from the loopback
        issuer with a refresh cooldown of ``settings.flood_cooldown``."""
        if mode not in self._servers:
            progress(f"starting uvicorn ({mode})")
            env = {
                "BENCH_ISSUER": self.rsa.issuer,
                "BENCH_DISCOVERY_URL": self.rsa.discovery_url,
                "BENCH_COOLDOWN": str(self.settings.flood_cooldown),
            }
            probe = get_request(self.repeated if mode == "tokenguard" else None)
            server = ServerProcess(mode, env, probe)
            self._servers[mode] = await self._stack.enter_async_context(server)
        return self._servers[mode]

    def unique(self, alg: str, count: int | None = None) -> list[str]:
        """``count`` (default ``settings.tokens``) distinct tokens signed with ``alg``."""
        count = self.settings.tokens if count is None else count
        have = self._tokens.setdefault(alg, [])
        if len(have) < count:
            progress(f"minting {count - len(have)} {alg} tokens")
            have += mint_many(self.issuers[alg], count - len(have))
        return have[:count]

    def validator(self, alg: str = "RS256", **options: Any) -> TokenValidator:
        """A validator for ``alg``'s issuer fetching through the mock transport (closed at exit)."""
        validator = self.issuers[alg].validator(AUDIENCE, **options)
        self._validators.append(validator)
        return validator

    def track(self, validator: TokenValidator) -> TokenValidator:
        """Close ``validator`` at exit."""
        self._validators.append(validator)
        return validator
