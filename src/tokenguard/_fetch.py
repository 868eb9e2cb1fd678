"""Bounded HTTP GETs of issuer metadata: https only (http for loopback), a total
deadline, a body size cap, no content decoding, and redirects only to the same
origin.

A failure is a :class:`FetchError` whose text says what went wrong in an operator's
words ("connection refused", "HTTP status 404 (Not Found)", "timed out: ..."); the
caller adds which document and URL it asked for.
"""

from __future__ import annotations

import email.utils
import json
import math
import re
import socket
import ssl
import time
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import urljoin, urlsplit

import anyio
import httpx

from ._config import check_url

__all__ = ["FetchError", "FetchResult", "fetch_json", "lifetime_from_headers"]

MAX_REDIRECTS: Final = 3
_MAX_AGE: Final = re.compile(
    r"(?:^|,)\s*(?:s-maxage|max-age)\s*=\s*\"?(\d{1,10})\"?", re.IGNORECASE
)
_NO_CACHE: Final = re.compile(r"(?:^|,)\s*(?:no-store|no-cache)\b", re.IGNORECASE)


class FetchError(Exception):
    """A metadata fetch failed; the message is safe to log (no bodies)."""


def _describe_http_error(exc: httpx.HTTPError) -> str:
    """What a transport error means to an operator, with the httpx class name.

    The OS error underneath says more than httpx's own text ("All connection
    attempts failed"), so the cause chain is searched for it first.
    """
    name = type(exc).__name__
    cause: BaseException | None = exc
    seen = 0
    while cause is not None and seen < 10:  # a chain is short; a cycle must still end
        seen += 1
        if isinstance(cause, ConnectionRefusedError):
            return f"connection refused ({name})"
        if isinstance(cause, ConnectionResetError):
            return f"connection reset ({name})"
        if isinstance(cause, socket.gaierror):
            return f"host name not resolved: {cause.strerror} ({name})"
        if isinstance(cause, ssl.SSLCertVerificationError):
            return f"TLS certificate not accepted: {cause.verify_message} ({name})"
        if isinstance(cause, ssl.SSLError):
            # reason is the OpenSSL short name (e.g. WRONG_VERSION_NUMBER) when known.
            return f"TLS failed: {getattr(cause, 'reason', None) or cause} ({name})"
        cause = cause.__cause__ or cause.__context__
    if isinstance(exc, httpx.TimeoutException):
        return f"timed out ({name})"
    text = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ""
    return f"{text} ({name})" if text else name


@dataclass(frozen=True, slots=True)
class FetchResult:
    """A fetched JSON document, or ``document is None`` for 304 Not Modified."""

    document: Any
    etag: str | None
    lifetime: float | None


def lifetime_from_headers(headers: httpx.Headers, now: float | None = None) -> float | None:
    """Cache lifetime in seconds from ``Cache-Control`` or ``Expires``; ``None`` if absent."""
    cache_control = headers.get("cache-control", "")
    if _NO_CACHE.search(cache_control):
        return 0.0
    match = _MAX_AGE.search(cache_control)
    if match:
        return float(match.group(1))
    expires = headers.get("expires")
    if expires:
        try:
            when = email.utils.parsedate_to_datetime(expires).timestamp()
        except (TypeError, ValueError, OverflowError):  # numbers beyond C ints: overflow
            return 0.0  # RFC 9111: an invalid Expires means already expired
        return max(0.0, when - (time.time() if now is None else now))
    return None


def _same_origin(a: str, b: str) -> bool:
    pa, pb = urlsplit(a), urlsplit(b)
    return (pa.scheme, pa.hostname, pa.port) == (pb.scheme, pb.hostname, pb.port)


def _strict_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


async def _get_once(
    client: httpx.AsyncClient, url: str, headers: dict[str, str], max_bytes: int
) -> tuple[httpx.Response, bytes]:
    async with client.stream("GET", url, headers=headers, follow_redirects=False) as response:
        encoding = response.headers.get("content-encoding", "identity").strip().lower()
        if encoding not in ("", "identity"):
            raise FetchError(f"refusing content-encoding {encoding[:20]!r}")
        length = response.headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > max_bytes:
            raise FetchError(f"body larger than {max_bytes} bytes")
        body = bytearray()
        # Content-Encoding is refused above, so these bytes are the raw body.
        async for chunk in response.aiter_bytes():
            body += chunk
            if len(body) > max_bytes:
                raise FetchError(f"body larger than {max_bytes} bytes")
        return response, bytes(body)


async def fetch_json(
    client: httpx.AsyncClient,
    url: str,
    *,
    timeout: float,
    max_bytes: int,
    etag: str | None = None,
) -> FetchResult:
    """GET a JSON document within ``timeout`` seconds in total; raise :class:`FetchError`."""
    headers = {"Accept": "application/json", "Accept-Encoding": "identity"}
    if etag:
        headers["If-None-Match"] = etag
    try:
        with anyio.fail_after(timeout):
            for _ in range(MAX_REDIRECTS + 1):
                response, body = await _get_once(client, url, headers, max_bytes)
                if response.status_code not in (301, 302, 303, 307, 308):
                    break
                target = urljoin(url, response.headers.get("location", ""))
                if not _same_origin(url, target):
                    raise FetchError("redirect to another origin refused")
                url = check_url(target, "redirect target")
            else:
                raise FetchError("too many redirects")
    except TimeoutError as exc:
        raise FetchError(
            f"timed out: no complete answer within {timeout:g} s (Issuer.fetch_timeout)"
        ) from exc
    except httpx.HTTPError as exc:
        raise FetchError(_describe_http_error(exc)) from exc
    except ValueError as exc:  # a redirect target that check_url refused
        raise FetchError(str(exc)) from exc
    lifetime = lifetime_from_headers(response.headers)
    new_etag = response.headers.get("etag")
    if response.status_code == 304 and etag:
        return FetchResult(None, new_etag or etag, lifetime)
    if response.status_code != 200:
        raise FetchError(_status_text(response.status_code))
    try:
        document = json.loads(body.decode("utf-8"), parse_constant=_strict_constant)
    except (ValueError, RecursionError) as exc:
        raise FetchError("body is not JSON") from exc
    if not isinstance(document, dict):
        raise FetchError("body is not a JSON object")
    return FetchResult(document, new_etag, lifetime)


def _status_text(status: int) -> str:
    """``HTTP status 404 (Not Found)``: the standard reason phrase, not the server's."""
    phrase = httpx.codes.get_reason_phrase(status)
    return f"HTTP status {status} ({phrase})" if phrase else f"HTTP status {status}"


def retry_after_seconds(seconds: float) -> int:
    """A whole, positive ``Retry-After`` value."""
    return max(1, math.ceil(seconds))
