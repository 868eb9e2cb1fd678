"""Bounded metadata fetches: URL policy, redirects, size caps, deadlines."""

from __future__ import annotations

import asyncio
import gzip
import socket
import ssl
from collections.abc import AsyncIterator

import httpx
import pytest

from tokenguard._config import check_url, is_loopback_host
from tokenguard._fetch import (
    FetchError,
    _describe_http_error,
    fetch_json,
    lifetime_from_headers,
)

pytestmark = pytest.mark.anyio


async def fetch(handler: object, url: str = "https://idp.example/keys", **kw: object) -> object:
    transport = httpx.MockTransport(handler)  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=transport) as client:
        options = {"timeout": 1.0, "max_bytes": 1024, **kw}
        return (await fetch_json(client, url, **options)).document  # type: ignore[arg-type]


async def test_fetches_json() -> None:
    assert await fetch(lambda r: httpx.Response(200, json={"keys": []})) == {"keys": []}


@pytest.mark.parametrize(
    ("location", "ok"),
    [
        ("/elsewhere", True),
        ("https://idp.example/elsewhere", True),
        ("http://idp.example/elsewhere", False),
        ("https://evil.example/keys", False),
        ("https://idp.example:8443/keys", False),
    ],
)
async def test_redirects_stay_on_the_same_origin(location: str, ok: bool) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/keys":
            return httpx.Response(302, headers={"location": location})
        return httpx.Response(200, json={"moved": True})

    if ok:
        assert await fetch(handler) == {"moved": True}
    else:
        with pytest.raises(FetchError, match="another origin"):
            await fetch(handler)


async def test_redirect_loops_end() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(307, headers={"location": "/keys"})

    with pytest.raises(FetchError, match="too many redirects"):
        await fetch(handler)


async def test_loopback_http_redirect_to_same_origin_is_followed() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/a":
            return httpx.Response(301, headers={"location": "http://127.0.0.1:9/b"})
        return httpx.Response(200, json={"b": 1})

    assert await fetch(handler, "http://127.0.0.1:9/a") == {"b": 1}


async def test_declared_oversize_body_is_refused() -> None:
    with pytest.raises(FetchError, match="larger than 1024"):
        await fetch(lambda r: httpx.Response(200, content=b"x" * 5000))


async def test_streamed_oversize_body_is_refused() -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(100):
            yield b"x" * 100

    with pytest.raises(FetchError, match="larger than 1024"):
        await fetch(lambda r: httpx.Response(200, content=chunks()))


async def test_compressed_bodies_are_refused() -> None:
    # A decompression bomb is refused before a byte is decoded.
    async def body() -> AsyncIterator[bytes]:
        yield gzip.compress(b"{}" + b" " * 10_000_000)

    def handler(request: httpx.Request) -> httpx.Response:
        assert request.headers["accept-encoding"] == "identity"
        return httpx.Response(200, content=body(), headers={"content-encoding": "gzip"})

    with pytest.raises(FetchError, match="content-encoding"):
        await fetch(handler)


async def test_total_deadline_covers_slow_answers() -> None:
    async def handler(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(5)
        return httpx.Response(200, json={})

    with pytest.raises(FetchError, match=r"within 0\.05 s"):
        await fetch(handler, timeout=0.05)


async def test_transport_errors_become_fetch_errors() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused")

    with pytest.raises(FetchError, match="ConnectError"):
        await fetch(handler)


@pytest.mark.parametrize(
    ("status", "body"), [(500, b"{}"), (200, b"[]"), (200, b"\xff"), (200, b'{"a": Infinity}')]
)
async def test_bad_answers_are_fetch_errors(status: int, body: bytes) -> None:
    with pytest.raises(FetchError):
        await fetch(lambda r: httpx.Response(status, content=body))


async def test_not_modified_returns_no_document() -> None:
    transport = httpx.MockTransport(lambda r: httpx.Response(304, headers={"etag": '"v2"'}))
    async with httpx.AsyncClient(transport=transport) as client:
        result = await fetch_json(
            client, "https://x.example/k", timeout=1, max_bytes=99, etag='"v1"'
        )
    assert result.document is None and result.etag == '"v2"'


def test_lifetime_from_headers() -> None:
    assert lifetime_from_headers(httpx.Headers({"cache-control": "max-age=60"})) == 60
    assert lifetime_from_headers(httpx.Headers({"cache-control": 's-maxage="30"'})) == 30
    assert lifetime_from_headers(httpx.Headers({"cache-control": "no-cache"})) == 0
    assert lifetime_from_headers(httpx.Headers({})) is None
    expires = httpx.Headers({"expires": "Thu, 01 Jan 2037 00:00:00 GMT"})
    assert lifetime_from_headers(expires, now=2_114_380_800 - 100) == 100


@pytest.mark.parametrize(
    "expires",
    [
        "soon",
        "Fri, 01 Jan 99999 00:00:00 GMT",
        # Numbers beyond a C int or long overflow inside the date parser.
        "Fri, 01 Jan 99999999999999999999 00:00:00 GMT",
        "Fri, 99999999999999999999 Jan 2030 00:00:00 GMT",
        "Fri, 01 Jan 2030 99999999999999999999:00:00 GMT",
        "Fri, 01 Jan 2030 00:00:00 +99999999999999999",
    ],
)
def test_an_invalid_expires_means_expired(expires: str) -> None:
    assert lifetime_from_headers(httpx.Headers({"expires": expires}), now=0) == 0.0


@pytest.mark.parametrize(
    ("url", "ok"),
    [
        ("https://login.microsoftonline.com/x", True),
        ("http://127.0.0.1:8700/x", True),
        ("http://127.5.6.7/x", True),
        ("http://[::1]:80/x", True),
        ("http://localhost/x", True),
        ("http://login.microsoftonline.com/x", False),
        ("http://10.0.0.1/x", False),
        ("ftp://127.0.0.1/x", False),
        ("/relative", False),
    ],
)
def test_url_policy(url: str, ok: bool) -> None:
    if ok:
        assert check_url(url, "u") == url
    else:
        with pytest.raises(ValueError):
            check_url(url, "u")


def test_loopback_detection() -> None:
    assert is_loopback_host("a.localhost")
    assert not is_loopback_host("localhost.evil.example")


# -- what a failure says ------------------------------------------------------------


def cert_error(message: str) -> ssl.SSLCertVerificationError:
    error = ssl.SSLCertVerificationError(1, "certificate verify failed")
    error.verify_message = message
    return error


def chained(outer: httpx.HTTPError, inner: BaseException) -> httpx.HTTPError:
    outer.__cause__ = inner
    return outer


@pytest.mark.parametrize(
    ("error", "text"),
    [
        (chained(httpx.ConnectError("x"), ConnectionRefusedError(111, "no")), "connection refused"),
        (chained(httpx.ReadError("x"), ConnectionResetError(104, "r")), "connection reset"),
        (
            chained(httpx.ConnectError("x"), socket.gaierror(-2, "Name or service not known")),
            "host name not resolved: Name or service not known",
        ),
        (
            chained(httpx.ConnectError("x"), cert_error("self-signed certificate")),
            "TLS certificate not accepted: self-signed certificate",
        ),
        (chained(httpx.ConnectError("x"), ssl.SSLError(1, "bad")), "TLS failed: "),
        (httpx.ConnectTimeout("slow"), "timed out (ConnectTimeout)"),
        (httpx.RemoteProtocolError("peer closed\nmore"), "peer closed (RemoteProtocolError)"),
        (httpx.RemoteProtocolError(""), "RemoteProtocolError"),
    ],
)
def test_transport_errors_in_an_operators_words(error: httpx.HTTPError, text: str) -> None:
    described = _describe_http_error(error)
    assert described.startswith(text)
    assert described.endswith(f"({type(error).__name__})") or described == text


async def test_status_and_deadline_texts() -> None:
    with pytest.raises(FetchError, match=r"^HTTP status 404 \(Not Found\)$"):
        await fetch(lambda r: httpx.Response(404))
    with pytest.raises(FetchError, match=r"^HTTP status 599$"):
        await fetch(lambda r: httpx.Response(599))

    async def slow(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(5)
        return httpx.Response(200, json={})

    with pytest.raises(FetchError) as info:
        await fetch(slow, timeout=0.05)
    assert str(info.value) == ("timed out: no complete answer within 0.05 s (Issuer.fetch_timeout)")
