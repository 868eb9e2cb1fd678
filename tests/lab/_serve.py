"""Run one toy service in its own process, for the crash tests.

    python -m tests.lab._serve keyvault|storage STATE_DIR ISSUER DISCOVERY_URL OID PORT_FILE

Binds a free 127.0.0.1 port, serves https with the lab TLS files under ``STATE_DIR``,
grants ``OID`` the writer role, and writes the port to ``PORT_FILE`` once listening.
"""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path

import uvicorn
from examples.lab import blob, keyvault
from examples.lab.identity import RoleAssignment, RoleAssignments
from examples.lab.runtime import ensure_tls
from starlette.applications import Starlette

from tokenguard import Issuer, TokenValidator


def _app(
    service: str, state_dir: Path, url: str, issuer: str, discovery: str, oid: str
) -> Starlette:
    tenant = issuer.rstrip("/").rsplit("/", 1)[-1]
    if service == "keyvault":
        audiences: tuple[str, ...] = (keyvault.KEYVAULT_AUDIENCE,)
        role = RoleAssignment(oid, "Key Vault Secrets Officer", "/keyvault")
    else:
        audiences = blob.STORAGE_AUDIENCES
        role = RoleAssignment(oid, "Storage Blob Data Contributor", "/storage")
    validator = TokenValidator(
        [
            Issuer(
                issuer=issuer,
                audiences=audiences,
                discovery_url=discovery,
                require_roles_or_scopes=False,
            )
        ]
    )
    factory = keyvault.create_app if service == "keyvault" else blob.create_app
    return factory(
        validator=validator,
        rbac=RoleAssignments([role]),
        state_dir=state_dir,
        public_url=url,
        authority="http://127.0.0.1:1",
        tenant_id=tenant,
    )


class _AnnouncingServer(uvicorn.Server):
    """Writes its port to a file once it listens, so the test knows where and when."""

    def __init__(self, config: uvicorn.Config, port: int, port_file: Path) -> None:
        super().__init__(config)
        self.port = port
        self.port_file = port_file

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        tmp = self.port_file.with_suffix(".tmp")
        tmp.write_text(str(self.port))
        os.replace(tmp, self.port_file)  # the test sees the whole port or nothing


def main(argv: list[str]) -> None:
    service, state, issuer, discovery, oid, port_file = argv
    state_dir = Path(state)
    tls = ensure_tls(state_dir)
    # IPPROTO_TCP explicitly: asyncio sets TCP_NODELAY on accepted sockets only when the
    # listening socket says TCP; with proto 0 every response with a body stalls ~40 ms
    # (Nagle against delayed ACK).
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    app = _app(service, state_dir, f"https://127.0.0.1:{port}", issuer, discovery, oid)
    config = uvicorn.Config(
        app,
        log_level="warning",
        http="h11",
        ws="none",
        lifespan="on",
        ssl_certfile=str(tls.server_cert),
        ssl_keyfile=str(tls.server_key),
    )
    _AnnouncingServer(config, port, Path(port_file)).run(sockets=[sock])


if __name__ == "__main__":
    main(sys.argv[1:])
