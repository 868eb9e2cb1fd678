"""``tokenguard`` command line: verify a token against an issuer, or decode one unverified.

    tokenguard verify TOKEN --issuer ISS --audience AUD (--jwks-uri URL | --discovery-url URL)
                     [--algorithm ALG] [--leeway SECONDS] [--allow-no-permissions]
    tokenguard decode TOKEN

Pass ``-`` as TOKEN to read it from standard input (keeps it out of shell history).
Exit codes: 0 valid, 1 rejected, 2 usage, 3 keys unavailable.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import sys
import time
from collections.abc import Sequence
from typing import Any

from ._config import DEFAULT_LEEWAY, Issuer
from ._errors import InvalidToken, KeysUnavailable, TokenGuardError
from ._identity import Identity
from ._token import parse_token
from ._validator import TokenValidator

__all__ = ["main"]

EXIT_OK, EXIT_REJECTED, EXIT_USAGE, EXIT_KEYS = 0, 1, 2, 3


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tokenguard", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    verify = commands.add_parser("verify", help="verify a token and print the identity as JSON")
    verify.add_argument("token", help="the token, or - to read it from standard input")
    verify.add_argument("--issuer", required=True, help="expected iss (may contain {tenantid})")
    verify.add_argument("--audience", required=True, action="append", help="accepted aud")
    source = verify.add_mutually_exclusive_group(required=True)
    source.add_argument("--jwks-uri", help="JWKS URL")
    source.add_argument("--discovery-url", help="OIDC discovery document URL")
    verify.add_argument(
        "--algorithm", action="append", dest="algorithms", help="allowed alg (default RS256)"
    )
    verify.add_argument("--leeway", type=int, default=DEFAULT_LEEWAY, help="clock skew, seconds")
    verify.add_argument(
        "--allow-no-permissions",
        action="store_true",
        help="accept tokens with neither roles nor scopes (managed-identity tokens for "
        "Azure RBAC resources such as Key Vault carry none)",
    )
    decode = commands.add_parser("decode", help="show header and claims WITHOUT verifying")
    decode.add_argument("token", help="the token, or - to read it from standard input")
    return parser


def _read_token(value: str) -> str:
    return sys.stdin.readline().strip() if value == "-" else value.strip()


def identity_json(identity: Identity) -> dict[str, Any]:
    """An :class:`Identity` as JSON-ready data."""
    return {
        "kind": identity.kind,
        "object_id": identity.object_id,
        "tenant_id": identity.tenant_id,
        "app_id": identity.app_id,
        "subject": identity.subject,
        "issuer": identity.issuer,
        "audience": identity.audience,
        "mi_resource_id": identity.mi_resource_id,
        "roles": sorted(identity.roles),
        "scopes": sorted(identity.scopes),
        "expires_at": identity.expires_at,
    }


async def _verify(args: argparse.Namespace) -> int:
    issuer = Issuer(
        issuer=args.issuer,
        audiences=tuple(args.audience),
        jwks_uri=args.jwks_uri,
        discovery_url=args.discovery_url,
        algorithms=tuple(args.algorithms or ("RS256",)),
        leeway=args.leeway,
        require_roles_or_scopes=not args.allow_no_permissions,
    )
    async with TokenValidator([issuer]) as validator:
        try:
            identity = await validator.validate(_read_token(args.token))
        except KeysUnavailable as exc:
            print(json.dumps({"error": "keys_unavailable", "reason": exc.reason}))
            return EXIT_KEYS
        except TokenGuardError as exc:
            print(json.dumps({"error": exc.error, "reason": exc.reason}))
            return EXIT_REJECTED
    print(json.dumps(identity_json(identity), indent=2))
    return EXIT_OK


def _human(seconds: float) -> str:
    seconds = int(abs(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h {minutes}m {secs}s" if hours else f"{minutes}m {secs}s"


def _decode(args: argparse.Namespace) -> int:
    try:
        parsed = parse_token(_read_token(args.token))
    except InvalidToken as exc:
        print(json.dumps({"error": "invalid_token", "reason": exc.reason}))
        return EXIT_REJECTED
    out: dict[str, Any] = {"verified": False, "header": parsed.header, "claims": parsed.claims}
    exp = parsed.claims.get("exp")
    if isinstance(exp, int | float) and not isinstance(exp, bool):
        left = exp - time.time()
        when = dt.datetime.fromtimestamp(exp, dt.UTC).isoformat()
        out["expiry"] = (
            f"expires in {_human(left)} ({when})"
            if left > 0
            else f"expired {_human(left)} ago ({when})"
        )
    print("UNVERIFIED: the signature and claims of this token were NOT checked.", file=sys.stderr)
    print(json.dumps(out, indent=2))
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code."""
    args = _parser().parse_args(argv)
    if args.command == "verify":
        try:
            return asyncio.run(_verify(args))
        except ValueError as exc:  # configuration refused by Issuer
            print(f"tokenguard: {exc}", file=sys.stderr)
            return EXIT_USAGE
    return _decode(args)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
