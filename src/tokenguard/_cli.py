"""The tokenguard command line: check an issuer's configuration, verify a token, or
decode one.

    tokenguard check --issuer ISS --audience AUD (--discovery-url URL | --jwks-uri URL)
                     [--algorithm ALG] [--json]
    tokenguard verify TOKEN --issuer ISS --audience AUD (--jwks-uri URL | --discovery-url URL)
                     [--algorithm ALG] [--leeway SECONDS] [--allow-no-permissions]
    tokenguard decode TOKEN
    tokenguard --version

Pass - as TOKEN to read it from standard input (keeps it out of shell history).

Exit codes:
    0  check: keys loaded; verify: token valid; decode: token decoded
    1  verify: token rejected; decode: not a token
    2  usage: bad arguments, or a configuration the Issuer refuses
    3  keys unavailable: the discovery document or JWKS could not be loaded
       (the reason printed names the URL and the cause)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import logging
import sys
import time
from collections.abc import Iterator, Sequence
from typing import Any

import httpx

from . import __version__
from ._config import DEFAULT_LEEWAY, Issuer
from ._errors import InvalidToken, KeysUnavailable, TokenGuardError
from ._fetch import lifetime_from_headers
from ._keyset import KeySet
from ._token import parse_token
from ._validator import TokenValidator

__all__ = ["main"]

EXIT_OK, EXIT_REJECTED, EXIT_USAGE, EXIT_KEYS = 0, 1, 2, 3

#: argparse prints these as they are: plain text, no reST markup.
DESCRIPTION = "Check an issuer's configuration, verify a token against it, or decode one."
EPILOG = """exit codes:
  0  check: keys loaded; verify: token valid; decode: token decoded
  1  verify: token rejected; decode: not a token
  2  usage: bad arguments, or a configuration the Issuer refuses
  3  keys unavailable (the reason printed names the URL and the cause)
"""


def _add_issuer_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--issuer", required=True, help="expected iss (may contain {tenantid})")
    parser.add_argument("--audience", required=True, action="append", help="accepted aud")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--jwks-uri", help="JWKS URL")
    source.add_argument("--discovery-url", help="OIDC discovery document URL")
    parser.add_argument(
        "--algorithm", action="append", dest="algorithms", help="allowed alg (default RS256)"
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tokenguard",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"tokenguard {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    check = commands.add_parser(
        "check",
        help="load an issuer's keys once and print what was found, or why not",
        description="Load the discovery document and JWKS once, as the middleware would, "
        "and print the issuer, jwks_uri, key ids, algorithms and cache lifetime; or the "
        "URL and cause of the failure (exit code 3).",
    )
    _add_issuer_options(check)
    check.add_argument("--json", action="store_true", help="print the report as JSON")
    verify = commands.add_parser(
        "verify",
        help="verify a token and print the identity as JSON",
        description="Verify a token as the middleware would and print the identity as "
        "JSON; a refused token prints the reason (and, for a wrong issuer or audience, "
        "the token's value against the configured ones).",
    )
    verify.add_argument("token", help="the token, or - to read it from standard input")
    _add_issuer_options(verify)
    verify.add_argument("--leeway", type=int, default=DEFAULT_LEEWAY, help="clock skew, seconds")
    verify.add_argument(
        "--allow-no-permissions",
        action="store_true",
        help="accept tokens with neither roles nor scopes (managed-identity tokens for "
        "Azure RBAC resources such as Key Vault carry none)",
    )
    decode = commands.add_parser(
        "decode",
        help="show header and claims WITHOUT verifying",
        description="Show a token's header and claims WITHOUT verifying anything.",
    )
    decode.add_argument("token", help="the token, or - to read it from standard input")
    return parser


def _read_token(value: str) -> str:
    return sys.stdin.readline().strip() if value == "-" else value.strip()


def _issuer(args: argparse.Namespace, **options: Any) -> Issuer:
    return Issuer(
        issuer=args.issuer,
        audiences=tuple(args.audience),
        jwks_uri=args.jwks_uri,
        discovery_url=args.discovery_url,
        algorithms=tuple(args.algorithms or ("RS256",)),
        **options,
    )


def _shown(value: object) -> str:
    """A claim value for the operator's terminal: repr, cut short."""
    text = repr(value)
    return text if len(text) <= 200 else text[:197] + "..."


def _mismatch(exc: TokenGuardError, token: str, issuer: Issuer) -> str | None:
    """For a refused issuer or audience: the token's value against the configured ones
    (for the operator's terminal only, never an HTTP answer or a log).

    The audience is checked after the signature, so its value is the verified token's;
    the issuer chooses the keys, so a wrong one is reported unverified.
    """
    if exc.reason not in ("wrong_audience", "wrong_issuer"):
        return None
    try:
        claims = parse_token(token).claims
    except InvalidToken:  # pragma: no cover - the validator parsed it before refusing
        return None
    if exc.reason == "wrong_audience":
        return f"token aud {_shown(claims.get('aud'))} is not one of {sorted(issuer.audiences)!r}"
    return (
        f"token iss {_shown(claims.get('iss'))} is not {issuer.issuer!r}"
        " (signature not checked: the issuer chooses the keys)"
    )


async def _verify(args: argparse.Namespace) -> int:
    issuer = _issuer(
        args, leeway=args.leeway, require_roles_or_scopes=not args.allow_no_permissions
    )
    token = _read_token(args.token)
    async with TokenValidator([issuer]) as validator:
        try:
            identity = await validator.validate(token)
        except KeysUnavailable as exc:
            print(json.dumps({"error": "keys_unavailable", "reason": exc.reason}))
            print(f"tokenguard: {exc}", file=sys.stderr)
            return EXIT_KEYS
        except TokenGuardError as exc:
            answer: dict[str, Any] = {"error": exc.error, "reason": exc.reason}
            detail = _mismatch(exc, token, issuer)
            if detail is not None:
                answer["detail"] = detail
            print(json.dumps(answer))
            return EXIT_REJECTED
    print(json.dumps(identity.to_dict(), indent=2))
    return EXIT_OK


# -- check ------------------------------------------------------------------------------


class _Collect(logging.Handler):
    """Keeps the warnings of one check (skipped keys...) to print them in the report."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.notes: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.levelno >= logging.ERROR:
            return  # the failure itself: the report prints it once
        kid, why = getattr(record, "kid", None), getattr(record, "why", None)
        text = record.getMessage()
        self.notes.append(f"{text}: kid {kid!r}, {why}" if kid is not None else text)


@contextlib.contextmanager
def _collected() -> Iterator[_Collect]:
    handler = _Collect()
    logger = logging.getLogger("tokenguard")
    logger.addHandler(handler)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)


def _seconds(value: float) -> str:
    return f"{value:g} s"


async def _check_report(issuer: Issuer) -> tuple[dict[str, Any], bool]:
    answers: dict[str, httpx.Response] = {}

    async def record(response: httpx.Response) -> None:
        answers[str(response.request.url)] = response  # headers only: bodies not read yet

    client = httpx.AsyncClient(
        timeout=httpx.Timeout(issuer.fetch_timeout),
        follow_redirects=False,
        event_hooks={"response": [record]},
    )
    keyset = KeySet(issuer, lambda: client)
    report: dict[str, Any] = {
        "ok": False,
        "issuer": issuer.issuer,
        "discovery_url": issuer.discovery_url,
        "jwks_uri": None,
        "algorithms": list(issuer.algorithms),
        "keys": [],
        "cache": None,
        "notes": [],
        "error": None,
    }
    async with client:
        with _collected() as notes:
            try:
                await keyset.load()
            except KeysUnavailable as exc:
                report["error"] = str(exc)
            finally:
                await keyset.aclose()
    report["notes"] = notes.notes
    report["jwks_uri"] = keyset.jwks_uri
    if report["error"] is not None:
        return report, False
    jwks_answer = answers.get(keyset.jwks_uri or "")
    headers = jwks_answer.headers if jwks_answer is not None else httpx.Headers()
    report["cache"] = {
        "cache_control": headers.get("cache-control"),
        "expires": headers.get("expires"),
        "sent_seconds": lifetime_from_headers(headers),
        "lifetime_seconds": None if keyset.lifetime is None else round(keyset.lifetime, 3),
        "min_seconds": issuer.min_cache_ttl,
        "max_seconds": issuer.max_cache_ttl,
        "default_seconds": issuer.default_cache_ttl,
    }
    report["keys"] = [
        {"kid": k.kid, "kty": k.kty, "algorithms": sorted(k.algorithms), "issuer": k.issuer}
        for k in keyset.current_keys()
    ]
    report["ok"] = True
    return report, True


def _cache_line(cache: dict[str, Any]) -> str:
    sent = cache["sent_seconds"]
    bounds = f"kept within {_seconds(cache['min_seconds'])}..{_seconds(cache['max_seconds'])}"
    if sent is None:
        return (
            f"{_seconds(cache['lifetime_seconds'])} (no Cache-Control or Expires sent: "
            f"the default {_seconds(cache['default_seconds'])}, {bounds})"
        )
    what = (
        f"Cache-Control: {cache['cache_control']}"
        if cache["cache_control"]
        else f"Expires: {cache['expires']}"
    )
    return f"{_seconds(cache['lifetime_seconds'])} (the issuer sent {what}; {bounds})"


def _print_report(report: dict[str, Any]) -> None:
    rows = [("issuer", report["issuer"])]
    if report["discovery_url"] is not None:
        rows.append(("discovery", report["discovery_url"]))
    if report["jwks_uri"] is not None:
        told = " (from the discovery document)" if report["discovery_url"] is not None else ""
        rows.append(("jwks_uri", report["jwks_uri"] + told))
    rows.append(("algorithms", ", ".join(report["algorithms"])))
    if report["cache"] is not None:
        rows.append(("cache", _cache_line(report["cache"])))
    for name, value in rows:
        print(f"{name:<11} {value}")
    if report["ok"]:
        print(f"keys        {len(report['keys'])}")
        for key in report["keys"]:
            line = f"  {key['kid']}  {key['kty']}  {', '.join(key['algorithms'])}"
            if key["issuer"] is not None:
                line += f"  issuer {key['issuer']}"
            print(line)
    for note in report["notes"]:
        print(f"note        {note}")
    if report["ok"]:
        print(f"OK: {len(report['keys'])} signing key(s) loaded")
    else:
        print(f"FAILED: {report['error']}")


async def _check(args: argparse.Namespace) -> int:
    report, ok = await _check_report(_issuer(args))
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        _print_report(report)
    return EXIT_OK if ok else EXIT_KEYS


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
    if args.command == "decode":
        return _decode(args)
    command = _check if args.command == "check" else _verify
    try:
        return asyncio.run(command(args))
    except ValueError as exc:  # configuration refused by Issuer
        print(f"tokenguard: {exc}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
