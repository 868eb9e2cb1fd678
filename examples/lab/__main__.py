"""``python -m examples.lab``: run the lab in the foreground, or manage the running one.

    python -m examples.lab                 run it (what ``make lab`` does); Ctrl-C stops it
    python -m examples.lab keys            the issuer's keys and their states
    python -m examples.lab rotate [--overlap S] [--retire-after S]
                                           publish a new key, sign with it after S seconds,
                                           retire the old key S seconds later
    python -m examples.lab apps            app registrations and app-role assignments
    python -m examples.lab assign|unassign PRINCIPAL APP ROLE
                                           give (or take) an identity (name or object id)
                                           an app role of a registered API

Environment: ``LAB_PORT`` (base port, default 8700; 0 = any free ports), ``LAB_DIR``
(state, default ``.lab``), ``LAB_CONFIG`` (TOML, default ``examples/lab/default.toml``),
``LAB_LOG`` (uvicorn log level, default ``warning``; ``info`` logs each request).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx

from .identity import ADMIN_HEADER
from .runtime import DEFAULT_PORT, ConfigError, Lab, LabError, config_from_env, port_from_env


def _state_dir() -> Path:
    return Path(os.environ.get("LAB_DIR") or ".lab")


def _lab_from_env() -> Lab:
    port = port_from_env()
    return Lab(
        _state_dir(),
        config=config_from_env(),
        base_port=DEFAULT_PORT if port is None else port,
        log=lambda line: print(line, flush=True),
        log_level=os.environ.get("LAB_LOG", "warning"),
    )


async def _run() -> int:
    lab = _lab_from_env()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    print("starting the tokenguard identity lab on 127.0.0.1", flush=True)
    start = asyncio.create_task(lab.start())
    stopping = asyncio.create_task(stop.wait())
    await asyncio.wait({start, stopping}, return_when=asyncio.FIRST_COMPLETED)
    if not start.done():  # Ctrl-C during startup: let it finish, then stop
        await asyncio.wait({start})
    if start.exception() is not None:
        stopping.cancel()
        raise start.exception()  # type: ignore[misc]
    print("\nready:", flush=True)
    print(lab.readiness_table(), flush=True)
    print(f"\nclient environment: . {lab.state_dir / 'env'}", flush=True)
    print(f"App Service flavour: . {lab.state_dir / 'env.appservice'}", flush=True)
    print("Ctrl-C stops the lab.", flush=True)
    await stopping
    print("\nstopping ...", flush=True)
    await lab.stop()
    print("stopped.", flush=True)
    return 0


def _admin(method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    state = _state_dir()
    try:
        info = json.loads((state / "lab.json").read_text())
        secret = (state / "admin-secret").read_text().strip()
    except FileNotFoundError:
        raise LabError(f"no running lab found in {state} (start it with `make lab`)") from None
    url = info["urls"]["issuer"] + path
    try:
        response = httpx.request(
            method, url, json=body, headers={ADMIN_HEADER: secret}, trust_env=False, timeout=10
        )
    except httpx.HTTPError as exc:
        raise LabError(f"the lab at {url} does not answer ({exc})") from None
    if response.status_code not in (200, 201, 204):
        raise LabError(f"{url} answered {response.status_code}: {response.text}")
    result: dict[str, Any] = response.json() if response.content else {}
    return result


def _print_keys(keys: list[dict[str, Any]]) -> None:
    for key in keys:
        retire = key["retire_at"]
        print(
            f"  {key['kid']}  {key['state']:<16}  signs from {key['sign_from']:.0f}"
            + (f", retires at {retire:.0f}" if retire is not None else "")
        )


def _print_apps(directory: dict[str, Any]) -> None:
    for app in directory["applications"]:
        print(
            f"  {app['name']}  {app['identifier_uri']}  app id {app['app_id']}  "
            f"v{app['token_version']} tokens  roles: {', '.join(app['app_roles']) or '-'}"
        )
    for assignment in directory["app_role_assignments"]:
        print(f"    {assignment['principal']}  {assignment['app']}  {assignment['role']}")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code."""
    parser = argparse.ArgumentParser(
        prog="python -m examples.lab", description=__doc__.split("\n")[0]
    )
    commands = parser.add_subparsers(dest="command")
    commands.add_parser("run", help="run the lab in the foreground (the default)")
    commands.add_parser("keys", help="show the issuer's keys")
    rotate = commands.add_parser("rotate", help="rotate the issuer's signing key")
    rotate.add_argument("--overlap", type=float, help="seconds between publishing and signing")
    rotate.add_argument("--retire-after", type=float, help="seconds the old key stays published")
    commands.add_parser("apps", help="show the app registrations and app-role assignments")
    for name, verb in (("assign", "give"), ("unassign", "take away")):
        command = commands.add_parser(name, help=f"{verb} an identity an app role")
        command.add_argument("principal", help="identity name (tokenguard-vm...) or object id")
        command.add_argument("app", help="app registration name")
        command.add_argument("role", help="app role value")
    args = parser.parse_args(argv)
    try:
        if args.command in (None, "run"):
            return asyncio.run(_run())
        if args.command == "keys":
            _print_keys(_admin("GET", "/_lab/keys")["keys"])
            return 0
        if args.command == "apps":
            _print_apps(_admin("GET", "/_lab/apps"))
            return 0
        if args.command in ("assign", "unassign"):
            body = {"principal": args.principal, "app": args.app, "role": args.role}
            method = "POST" if args.command == "assign" else "DELETE"
            _admin(method, "/_lab/app-role-assignments", body)
            print(f"{args.command}ed: {args.principal} {args.app} {args.role}")
            _print_apps(_admin("GET", "/_lab/apps"))
            return 0
        body = {
            name: value
            for name, value in (("overlap", args.overlap), ("retire_after", args.retire_after))
            if value is not None
        }
        result = _admin("POST", "/_lab/rotate", body)
        print(f"new key {result['kid']} published")
        _print_keys(result["keys"])
        return 0
    except (LabError, ConfigError) as exc:
        print(f"lab: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
