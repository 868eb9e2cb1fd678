"""A real issuer on 127.0.0.1 whose behaviour a test switches at will.

:class:`FaultyIssuer` serves a :class:`~tokenguard.testing.LocalIssuer`'s discovery
document and JWKS over raw asyncio sockets (plain HTTP/1.1, or TLS), one request per
connection, and can instead hang, drip one byte a second, send 5 MB, HTML, invalid
JSON, ``{"keys": {}}``, 500/503, redirect elsewhere, drop keys from the JWKS, or be
down altogether (its port closed: connection refused).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import ssl
import tempfile
from pathlib import Path
from typing import Final, Literal

import httpx
from examples.lab.runtime import ensure_tls

from tokenguard.testing import LocalIssuer

__all__ = ["FaultyIssuer", "Mode", "Sink", "TlsPair", "make_tls"]

Mode = Literal[
    "healthy",
    "hang",
    "drip",
    "huge",
    "huge-chunked",
    "html",
    "bad-json",
    "keys-object",
    "status-500",
    "status-503",
    "redirect-other-host",
    "redirect-http",
    "drop-current-key",
]

FIVE_MB: Final = 5 * 1024 * 1024
_MAX_HEAD: Final = 64 * 1024


class TlsPair:
    """A certificate for 127.0.0.1 and the contexts to serve it and to trust it."""

    def __init__(self, server: ssl.SSLContext, client: ssl.SSLContext) -> None:
        self.server = server
        self.client = client


def make_tls() -> TlsPair:
    """A throwaway lab CA and 127.0.0.1 certificate (``ensure_tls``), loaded into contexts."""
    with tempfile.TemporaryDirectory() as folder:
        files = ensure_tls(Path(folder))
        server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        server.load_cert_chain(files.server_cert, files.server_key)
        client = ssl.create_default_context(cafile=str(files.ca_cert))
    return TlsPair(server, client)


class FaultyIssuer:
    """Serve ``issuer``'s metadata on 127.0.0.1 with a switchable :attr:`mode`.

    ``issuer.base_url`` is pointed at this server once it listens. :attr:`paths`
    records every request path in order; :attr:`open_connections` counts connections
    open right now.
    """

    def __init__(self, issuer: LocalIssuer, *, tls: ssl.SSLContext | None = None) -> None:
        self.issuer = issuer
        self.tls = tls
        self.mode: Mode = "healthy"
        #: For the redirect modes: where to send the client.
        self.redirect_to = ""
        #: Kids left out of the JWKS in ``drop-current-key`` mode.
        self.dropped: frozenset[str] = frozenset()
        self.paths: list[str] = []
        #: Connections open right now (a hanging or dripping fetch holds one).
        self.open_connections = 0
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    @property
    def base_url(self) -> str:
        """``http(s)://127.0.0.1:PORT``."""
        scheme = "https" if self.tls else "http"
        return f"{scheme}://127.0.0.1:{self.port}"

    async def start(self) -> None:
        """Listen (again, on the same port after :meth:`stop`)."""
        self._server = await asyncio.start_server(
            self._handle, "127.0.0.1", self.port, ssl=self.tls, reuse_address=True
        )
        self.port = self._server.sockets[0].getsockname()[1]
        self.issuer.base_url = self.base_url

    async def stop(self) -> None:
        """Close the port (clients now get connection refused) and every open connection."""
        if self._server is not None:
            self._server.close()
            for writer in list(self._writers):
                writer.close()
            await self._server.wait_closed()
            self._server = None

    async def __aenter__(self) -> FaultyIssuer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # -- serving -----------------------------------------------------------------

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        self.open_connections += 1
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            if len(head) > _MAX_HEAD:
                return
            request_line, *lines = head.decode("latin-1").split("\r\n")
            path = request_line.split(" ")[1]
            headers = {
                name.strip().lower(): value.strip()
                for name, _, value in (line.partition(":") for line in lines if line)
            }
            self.paths.append(path)
            await self._answer(path, headers, reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError, ssl.SSLError, OSError):
            pass  # the client gave up: that is what several faults are for
        finally:
            self.open_connections -= 1
            self._writers.discard(writer)
            writer.close()
            with contextlib.suppress(ConnectionError, ssl.SSLError, OSError):
                await writer.wait_closed()

    async def _answer(
        self,
        path: str,
        headers: dict[str, str],
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> None:
        mode = self.mode
        if mode == "hang":
            await reader.read()  # until the client closes
        elif mode == "drip":
            body = b'{"keys": []}' * 100
            await self._head(writer, 200, {"content-length": str(len(body))})
            for byte in body:
                writer.write(bytes([byte]))
                await writer.drain()
                await asyncio.sleep(1.0)
        elif mode == "huge":
            await self._head(writer, 200, {"content-length": str(FIVE_MB)})
            chunk = b" " * 65536
            for _ in range(FIVE_MB // len(chunk)):
                writer.write(chunk)
                await writer.drain()
        elif mode == "huge-chunked":
            await self._head(writer, 200, {"transfer-encoding": "chunked"})
            chunk = b" " * 65536
            for _ in range(FIVE_MB // len(chunk)):
                writer.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                await writer.drain()
            writer.write(b"0\r\n\r\n")
        elif mode == "html":
            body = b"<!doctype html><html><body><h1>Sign in</h1></body></html>"
            await self._send(writer, 200, {"content-type": "text/html"}, body)
        elif mode == "bad-json":
            await self._send(writer, 200, {}, b'{"keys": [{"kty": "RSA", ')
        elif mode == "keys-object":
            await self._send(writer, 200, {}, b'{"keys": {}}')
        elif mode in ("status-500", "status-503"):
            status = int(mode[-3:])
            await self._send(writer, status, {"retry-after": "120"}, b'{"error":"server_error"}')
        elif mode in ("redirect-other-host", "redirect-http"):
            await self._send(writer, 302, {"location": self.redirect_to + path}, b"")
        else:
            await self._healthy(path, headers, writer)

    async def _healthy(
        self, path: str, headers: dict[str, str], writer: asyncio.StreamWriter
    ) -> None:
        request_headers = {}
        if "if-none-match" in headers:
            request_headers["if-none-match"] = headers["if-none-match"]
        request = httpx.Request("GET", self.base_url + path, headers=request_headers)
        response = self.issuer.handler(request)
        body = response.content
        answer_headers = {
            k: v for k, v in response.headers.items() if k in ("cache-control", "etag")
        }
        if self.mode == "drop-current-key" and path.endswith("/keys"):
            document = json.loads(body)
            document["keys"] = [k for k in document["keys"] if k["kid"] not in self.dropped]
            body = json.dumps(document).encode()
            answer_headers.pop("etag", None)
        await self._send(writer, response.status_code, answer_headers, body)

    @staticmethod
    async def _head(writer: asyncio.StreamWriter, status: int, headers: dict[str, str]) -> None:
        lines = [f"HTTP/1.1 {status} X", "connection: close"]
        headers.setdefault("content-type", "application/json")
        lines += [f"{name}: {value}" for name, value in headers.items()]
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        await writer.drain()

    async def _send(
        self, writer: asyncio.StreamWriter, status: int, headers: dict[str, str], body: bytes
    ) -> None:
        headers["content-length"] = str(len(body))
        await self._head(writer, status, headers)
        writer.write(body)
        await writer.drain()


class Sink:
    """A plain server on 127.0.0.1 that only records requests: a redirect target that
    must never be reached."""

    def __init__(self) -> None:
        self.paths: list[str] = []
        self.port = 0
        self._server: asyncio.Server | None = None

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT``."""
        return f"http://127.0.0.1:{self.port}"

    async def __aenter__(self) -> Sink:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
            head = await reader.readuntil(b"\r\n\r\n")
            self.paths.append(head.split(b" ")[1].decode("latin-1"))
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\n{}")
            await writer.drain()
        writer.close()
