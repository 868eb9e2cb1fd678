"""The soak run: a uvicorn-served protected app under mixed traffic while the issuer
rotates keys twice and goes down once, all on 127.0.0.1.

Timeline (fractions of ``duration``): rotation 1 (publish at 0.2, sign from 0.35),
issuer down 0.4-0.55 (port closed), rotation 2 (publish at 0.6, sign from 0.75 and
retire the first key). The key cache lifetime is an eighth of the run. Traffic: valid tokens
(reused, as managed-identity clients do), expired, forged, malformed, random kid and
no Authorization header. The app runs in its own process so its RSS is its own.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import random
import secrets
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

import httpx
from tests.faults.server import FaultyIssuer

from tokenguard.testing import LocalIssuer

__all__ = ["SoakReport", "soak"]

VAULT: Final = "https://vault.azure.net"
#: Share of requests per kind of traffic.
MIX: Final = {
    "valid": 50,
    "expired": 10,
    "forged": 10,
    "malformed": 10,
    "random-kid": 10,
    "missing": 10,
}
EXPECTED: Final = {
    "valid": 200,
    "expired": 401,
    "forged": 401,
    "malformed": 401,
    "random-kid": 401,
    "missing": 401,
}


def rss_kib(pid: int) -> int:
    """Resident set size of a process, in KiB (Linux ``/proc``)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@dataclass
class SoakReport:
    """What a soak run measured."""

    duration: float
    requests: int = 0
    by_kind: Counter[tuple[str, int]] = field(default_factory=Counter)
    latencies: list[float] = field(default_factory=list)
    unexpected: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    events: list[tuple[float, str]] = field(default_factory=list)
    rss_startup: int = 0
    rss_start: int = 0
    rss_end: int = 0
    log_lines: int = 0
    log_leaks: int = 0

    @property
    def server_errors(self) -> int:
        """Responses with a 5xx status."""
        return sum(n for (_, status), n in self.by_kind.items() if status >= 500)

    @property
    def invalid_accepted(self) -> int:
        """Invalid requests that got a 2xx: must always be zero."""
        return sum(
            n for (kind, status), n in self.by_kind.items() if kind != "valid" and status < 300
        )

    @property
    def rss_growth(self) -> float:
        """RSS growth from after warm-up to the end, as a fraction."""
        return (self.rss_end - self.rss_start) / self.rss_start

    def failures(self, allow_503: bool = False) -> list[str]:
        """Every violated promise, in words."""
        found = []
        if self.invalid_accepted:
            found.append(f"{self.invalid_accepted} invalid requests were accepted")
        if self.server_errors and not allow_503:
            found.append(f"{self.server_errors} responses were 5xx")
        if self.unexpected:
            found.append(f"unexpected answers: {dict(self.unexpected)}")
        if self.errors:
            found.append(f"client errors: {dict(self.errors)}")
        if self.rss_growth >= 0.10:
            found.append(f"RSS grew {self.rss_growth:.1%}")
        if self.log_leaks:
            found.append(f"{self.log_leaks} log lines contain a token")
        return found

    def table(self) -> str:
        """The report as Markdown."""
        q = statistics.quantiles(self.latencies, n=100) if len(self.latencies) > 1 else [0.0] * 99
        statuses = Counter[int]()
        for (_, status), n in self.by_kind.items():
            statuses[status] += n
        lines = [
            "| measure | value |",
            "|---|---|",
            f"| duration | {self.duration:.0f} s |",
            f"| requests | {self.requests} ({self.requests / self.duration:.0f}/s) |",
            "| status counts | "
            + ", ".join(f"{s}: {n}" for s, n in sorted(statuses.items()))
            + " |",
            f"| 5xx responses | {self.server_errors} |",
            f"| invalid requests accepted | {self.invalid_accepted} |",
            f"| unexpected answers | {sum(self.unexpected.values())} |",
            f"| latency p50 / p99 | {q[49] * 1000:.1f} ms / {q[98] * 1000:.1f} ms |",
            f"| app RSS after startup | {self.rss_startup / 1024:.1f} MiB |",
            f"| app RSS after warm-up / at end | {self.rss_start / 1024:.1f} MiB / "
            f"{self.rss_end / 1024:.1f} MiB ({self.rss_growth:+.1%}) |",
            f"| app log lines / lines with a token | {self.log_lines} / {self.log_leaks} |",
        ]
        lines.append("\n| traffic | status | count |\n|---|---|---|")
        for (kind, status), n in sorted(self.by_kind.items()):
            lines.append(f"| {kind} | {status} | {n} |")
        lines.append("\n| at | event |\n|---|---|")
        lines += [f"| {at:.0f} s | {what} |" for at, what in self.events]
        return "\n".join(lines)


class Traffic:
    """Pools of requests of each kind, refreshed when the issuer rotates."""

    def __init__(self, issuer: LocalIssuer) -> None:
        self.issuer = issuer
        self.rng = random.Random(7)  # reproducible mix; noqa: S311 - not for security
        self.refill()
        self.malformed = [
            "not-a-token",
            "a.b.c",
            "eyJhbGciOiJub25lIn0.e30.",
            "." * 500,
            _b64(os.urandom(300)),
            "eyJ" + "A" * 2000 + ".x.y",
        ]
        self.expired = [
            issuer.mint(VAULT, roles=["Secrets.Read"], lifetime=-3600) for _ in range(5)
        ]

    def refill(self) -> None:
        """Valid and forged tokens for the key that signs now."""
        self.valid = [self.issuer.mint(VAULT, roles=["Secrets.Read"]) for _ in range(20)]
        self.forged = [self.issuer.forge(VAULT, roles=["Secrets.Read"]) for _ in range(5)]

    def random_kid(self) -> str:
        header = {"typ": "JWT", "alg": "RS256", "kid": secrets.token_urlsafe(12)}
        token = self.forged[0].split(".")
        return ".".join([_b64(json.dumps(header).encode()), token[1], token[2]])

    def pick(self) -> tuple[str, dict[str, str]]:
        kind = self.rng.choices(list(MIX), weights=list(MIX.values()))[0]
        if kind == "missing":
            return kind, {}
        token = {
            "valid": lambda: self.rng.choice(self.valid),
            "expired": lambda: self.rng.choice(self.expired),
            "forged": lambda: self.rng.choice(self.forged),
            "malformed": lambda: self.rng.choice(self.malformed),
            "random-kid": self.random_kid,
        }[kind]()
        return kind, {"authorization": f"Bearer {token}"}


async def _worker(
    client: httpx.AsyncClient, traffic: Traffic, report: SoakReport, stop: asyncio.Event
) -> None:
    while not stop.is_set():
        kind, headers = traffic.pick()
        started = time.perf_counter()
        try:
            response = await client.get("/secret", headers=headers)
        except httpx.HTTPError as exc:
            report.errors[type(exc).__name__] += 1
            continue
        report.latencies.append(time.perf_counter() - started)
        report.requests += 1
        report.by_kind[(kind, response.status_code)] += 1
        if response.status_code != EXPECTED[kind] and response.status_code != 503:
            report.unexpected[f"{kind} -> {response.status_code}"] += 1


def _listening_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(1024)
    sock.set_inheritable(True)
    return sock


async def _wait_ready(client: httpx.AsyncClient) -> None:
    for _ in range(300):
        try:
            if (await client.get("/healthz")).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        await asyncio.sleep(0.05)
    raise RuntimeError("the soak app did not start")


async def soak(
    duration: float = 150.0,
    concurrency: int = 8,
    max_stale: float = 3600.0,
    key_ttl: int | None = None,
) -> SoakReport:
    """Run the soak for ``duration`` seconds and return what it measured.

    ``key_ttl`` is the issuer's JWKS ``max-age`` (default: an eighth of the run, at
    least 5 s); keys are published 0.15 x ``duration`` before they sign, which must
    exceed it for the routine refresh to see them first, as with Entra.
    """
    report = SoakReport(duration)
    issuer = LocalIssuer(jwks_max_age=key_ttl or max(5, int(duration / 8)))
    traffic = Traffic(issuer)
    with tempfile.TemporaryDirectory(prefix="tokenguard-soak-") as folder:
        log_path = Path(folder, "app.log")
        with log_path.open("wb") as log:
            await _run(report, issuer, traffic, log.fileno(), concurrency, max_stale)
        _scan_log(log_path, traffic, report)
    return report


async def _run(
    report: SoakReport,
    issuer: LocalIssuer,
    traffic: Traffic,
    log_fd: int,
    concurrency: int,
    max_stale: float,
) -> None:
    first_kid = issuer.signing_kid
    sock = _listening_socket()
    port = sock.getsockname()[1]
    async with FaultyIssuer(issuer) as server:
        child = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "soak.app",
                f"--fd={sock.fileno()}",
                f"--issuer={issuer.issuer}",
                f"--discovery-url={issuer.discovery_url}",
                f"--max-stale={max_stale}",
                f"--min-ttl={min(5, issuer.jwks_max_age)}",
            ],
            pass_fds=(sock.fileno(),),
            stdout=log_fd,
            stderr=subprocess.STDOUT,
        )
        sock.close()
        limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
        try:
            async with httpx.AsyncClient(
                base_url=f"http://127.0.0.1:{port}", limits=limits, timeout=30.0
            ) as client:
                await _wait_ready(client)
                report.rss_startup = rss_kib(child.pid)
                stop = asyncio.Event()
                workers = [
                    asyncio.create_task(_worker(client, traffic, report, stop))
                    for _ in range(concurrency)
                ]
                await _timeline(report, issuer, server, traffic, child.pid, first_kid)
                stop.set()
                await asyncio.gather(*workers)
                report.rss_end = rss_kib(child.pid)
        finally:
            child.terminate()
            child.wait(timeout=30)


async def _timeline(
    report: SoakReport,
    issuer: LocalIssuer,
    server: FaultyIssuer,
    traffic: Traffic,
    pid: int,
    first_kid: str,
) -> None:
    started = time.monotonic()
    duration = report.duration

    async def at(fraction: float, what: str) -> None:
        delay = started + fraction * duration - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        report.events.append((time.monotonic() - started, what))

    await at(0.1, "warm-up over: RSS baseline")
    report.rss_start = rss_kib(pid)
    # Rotations as Entra does them: a key is published a while before it signs.
    await at(0.2, "rotation 1: issuer publishes a new key")
    second = issuer.add_key()
    await at(0.35, "rotation 1: the new key signs")
    issuer.use_key(second)
    traffic.refill()
    await at(0.4, "issuer goes down (port closed)")
    await server.stop()
    await at(0.55, "issuer back up")
    await server.start()
    await at(0.6, "rotation 2: issuer publishes a third key")
    third = issuer.add_key()
    await at(0.75, "rotation 2: the third key signs, the first is retired")
    issuer.use_key(third)
    issuer.retire(first_kid)
    traffic.refill()
    await at(1.0, "end")


def _scan_log(path: Path, traffic: Traffic, report: SoakReport) -> None:
    """Count log lines and those holding any piece of a token the run sent."""
    pieces = {
        part
        for token in traffic.valid + traffic.forged + traffic.expired
        for part in token.split(".")
        if len(part) >= 20
    }
    with path.open(encoding="utf-8", errors="replace") as lines:
        for line in lines:
            report.log_lines += 1
            if any(piece in line for piece in pieces):
                report.log_leaks += 1
