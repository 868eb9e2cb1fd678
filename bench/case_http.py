"""Case 7: the route over HTTP (uvicorn subprocess on loopback), bare and protected."""

from __future__ import annotations

from ._context import Bench
from ._http import Load, get_request, run_load
from ._measure import progress
from ._report import Bound, Row

__all__ = ["describe", "run"]


def describe(load: Load) -> str:
    """p50/p99 and who was busy: a client near one full core means the generator limits."""
    note = (
        f"p50 {load.ms(0.5):.2f} ms, p99 {load.ms(0.99):.2f} ms; "
        f"CPU server {load.server_cpu:.2f}, client {load.client_cpu:.2f}"
    )
    if load.client_cpu > 0.9:
        note += " (generator-bound!)"
    return note


def _row(
    case: str,
    name: str,
    load: Load,
    *,
    reference: tuple[str, Load] | None = None,
    target: float | None = None,
) -> Row:
    """A row of requests per second, with the load's latency and CPU in its notes."""
    extra = {
        "requests": load.count,
        "p50_ms": load.ms(0.5),
        "p99_ms": load.ms(0.99),
        "server_cpu": load.server_cpu,
        "client_cpu": load.client_cpu,
    }
    label, value = ("", None) if reference is None else (reference[0], reference[1].rate)
    bound: Bound | None = None if target is None else ">="
    return Row(case, name, load.rate, "req/s", label, value, bound, target, describe(load), extra)


async def run(bench: Bench) -> list[Row]:
    """Rounds alternate between the subjects; each keeps its best round.

    The reference is the bare server receiving the very same requests (the bearer
    header it ignores included), so that the ratio is tokenguard's cost and not
    h11's cost of parsing a 1.3 KB header; the bare server without the header is
    shown as well.
    """
    settings = bench.settings
    open_server = await bench.http_server("open")
    guarded_server = await bench.http_server("tokenguard")
    with_token = get_request(bench.repeated)
    subjects = {
        "open": (open_server, with_token),
        "open, no header": (open_server, get_request()),
        "tokenguard": (guarded_server, with_token),
    }
    best: dict[str, Load] = {}
    for index in range(settings.http_rounds + 1):
        names = list(subjects) if index % 2 == 0 else list(reversed(subjects))
        for name in names:
            server, request = subjects[name]
            load = await run_load(
                server.port,
                [request],
                total=settings.http_requests,
                connections=settings.http_connections,
                max_seconds=settings.http_seconds,
                server_pid=server.pid,
            )
            if load.statuses.keys() != {200}:
                raise AssertionError(f"{name}: unexpected statuses {dict(load.statuses)}")
            if index == 0:
                continue  # warm-up round: connections, imports, first-request work
            progress(f"case 7: {name} round {index}: {load.rate:,.0f} req/s")
            if name not in best or load.rate > best[name].rate:
                best[name] = load
    bare, headerless, guarded = best["open"], best["open, no header"], best["tokenguard"]
    return [
        _row("7a", "HTTP: Starlette route, no auth, same requests (uvicorn, loopback)", bare),
        _row(
            "7b",
            "HTTP: Starlette + TokenGuardMiddleware, repeated token",
            guarded,
            reference=("no auth", bare),
            target=0.9,
        ),
        _row(
            "7c",
            "HTTP: Starlette route, no auth, requests without the bearer header",
            headerless,
            reference=("no auth, same requests", bare),
        ),
    ]
