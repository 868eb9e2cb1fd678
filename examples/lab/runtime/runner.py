"""The whole lab in one process: issuer, IMDS, App Service endpoint, toy Key Vault and Storage.

    async with Lab(Path(".lab"), base_port=8700) as lab:     # or base_port=0: any free ports
        print(lab.urls.imds, lab.env())

    with LabThread(Lab(tmp_path, base_port=0)) as lab:       # in a background thread
        ...                                                  # (sync SDK clients, tests)

Ports: issuer ``base``, IMDS ``base+1``, App Service ``base+2``, Key Vault ``base+3`` (https),
Storage ``base+4`` (https). Once every service answers, ``$LAB_DIR/env`` (shell ``export``
lines), ``$LAB_DIR/env.appservice`` and ``$LAB_DIR/lab.json`` are written.
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import secrets
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, Final

import httpx

from tokenguard import Issuer, TokenValidator

from .. import blob, keyvault
from ..identity import TOKEN_PATH, IdentityEndpoints, KeyRing, LabConfig, LabIssuer, TokenService
from . import tls
from .config import load_config
from .envfile import lab_environment, write_env_files
from .serving import HOST, LabError, RunningServer, bind, start_server

__all__ = [
    "DEFAULT_PORT",
    "Lab",
    "LabError",
    "LabThread",
    "LabUrls",
    "ServiceState",
    "config_from_env",
    "port_from_env",
]

DEFAULT_PORT: Final = 8700
_OFFSETS: Final = {"issuer": 0, "imds": 1, "app_service": 2, "keyvault": 3, "storage": 4}
#: The toy services: the module that builds each, and the audiences it accepts.
_SERVICES: Final[dict[str, tuple[ModuleType, tuple[str, ...]]]] = {
    "keyvault": (keyvault, (keyvault.KEYVAULT_AUDIENCE,)),
    "storage": (blob, blob.STORAGE_AUDIENCES),
}


def port_from_env() -> int | None:
    """``LAB_PORT`` as a port number, or ``None`` when it is not set."""
    text = os.environ.get("LAB_PORT")
    if not text:
        return None
    try:
        return int(text)
    except ValueError:
        raise LabError(f"LAB_PORT must be a port number, not {text!r}") from None


def config_from_env() -> LabConfig:
    """The config file named by ``LAB_CONFIG``, else the default one."""
    path = os.environ.get("LAB_CONFIG")
    return load_config(Path(path) if path else None)


def _secret_file(path: Path) -> str:
    """A random secret kept in a 0600 file, created on first use."""
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        value = secrets.token_urlsafe(24)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as file:
            file.write(value + "\n")
        return value


@dataclass(frozen=True)
class LabUrls:
    """Where each part of the running lab answers."""

    issuer: str
    authority: str
    discovery_url: str
    discovery_url_v2: str
    jwks_uri: str
    imds: str
    identity_endpoint: str
    keyvault: str | None
    storage: str | None
    storage_account: str | None


@dataclass(frozen=True)
class ServiceState:
    """A readiness table row."""

    name: str
    url: str
    state: str
    ok: bool


class Lab:
    """The lab's services on 127.0.0.1, state in ``state_dir``; see the module docstring.

    ``clock`` (wall-clock seconds) drives token times and the key schedule; ``monotonic``
    the IMDS rate limits. ``log`` receives progress lines (``None``: silent).
    ``services`` limits which optional toy services start.
    """

    def __init__(
        self,
        state_dir: Path,
        *,
        config: LabConfig | None = None,
        base_port: int = DEFAULT_PORT,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        log: Callable[[str], None] | None = print,
        log_level: str = "warning",
        services: tuple[str, ...] = ("keyvault", "storage"),
    ) -> None:
        if not 0 <= base_port <= 65535 - 4:
            raise ValueError("base_port must be 0 (any free ports) or 1..65531")
        self.state_dir = state_dir.resolve()
        self.config = config or load_config()
        self.base_port = base_port
        self.clock = clock
        self.monotonic = monotonic
        self._log = log
        self.log_level = log_level
        self.services = services
        self._servers: list[RunningServer] = []
        self._validators: list[TokenValidator] = []
        self._urls: LabUrls | None = None
        self._issuer: LabIssuer | None = None
        self._tokens: TokenService | None = None
        self.ca_cert: Path | None = None
        self.ca_bundle: Path | None = None
        self.states: list[ServiceState] = []
        self.identity_header = ""

    # -- accessors for a started lab -------------------------------------------

    @property
    def urls(self) -> LabUrls:
        """The URLs of the running services."""
        if self._urls is None:
            raise LabError("the lab is not running")
        return self._urls

    @property
    def issuer(self) -> LabIssuer:
        """The issuer (mint tokens, rotate keys) of the running lab."""
        if self._issuer is None:
            raise LabError("the lab is not running")
        return self._issuer

    @property
    def tokens(self) -> TokenService:
        """The token service IMDS and App Service hand out from."""
        if self._tokens is None:
            raise LabError("the lab is not running")
        return self._tokens

    def log(self, line: str) -> None:
        """Print a progress line (unless silent)."""
        if self._log is not None:
            self._log(line)

    def ssl_context(self) -> ssl.SSLContext:
        """An SSL context trusting the lab CA (for httpx clients of the toy services)."""
        if self.ca_cert is None:
            raise LabError("the lab has no TLS services running")
        return ssl.create_default_context(cafile=str(self.ca_cert))

    # -- lifecycle --------------------------------------------------------------

    def _port(self, name: str) -> int:
        return 0 if self.base_port == 0 else self.base_port + _OFFSETS[name]

    async def start(self) -> None:
        """Start every service, check each answers, and write the env files."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.state_dir.chmod(0o700)
        wanted = ["issuer", "imds", "app_service", *self.services]
        sockets = {}
        try:
            for name in wanted:
                sockets[name] = bind(self._port(name), name)
        except LabError:
            for sock in sockets.values():
                sock.close()
            raise
        try:
            await self._start_services(sockets)
            await self._check_ready()
        except BaseException:
            for name, sock in sockets.items():
                if not any(s.name == name for s in self._servers):
                    sock.close()
            await self.stop()
            raise
        self._write_state()

    async def _start_services(self, sockets: dict[str, Any]) -> None:
        config = self.config
        self.log(f"lab state in {self.state_dir} (config {config.source})")
        keys = KeyRing(self.state_dir / "keys", clock=self.clock)
        for kid in keys.forget_retired():
            self.log(f"  removed retired key {kid}")
        self.identity_header = _secret_file(self.state_dir / "identity-header")
        identity = IdentityEndpoints.create(
            config,
            keys,
            base_url=f"http://{HOST}:{sockets['issuer'].getsockname()[1]}",
            admin_secret=_secret_file(self.state_dir / "admin-secret"),
            identity_header=self.identity_header,
            clock=self.clock,
            monotonic=self.monotonic,
        )
        self._issuer = issuer = identity.issuer
        self._tokens = identity.tokens
        for name, app in identity.apps().items():
            await self._serve(name, app, sockets)
        urls: dict[str, str | None] = {"keyvault": None, "storage": None}
        if self.services:
            files = tls.ensure_tls(self.state_dir)
            self.ca_cert = Path(files.ca_cert)
            pair = (Path(files.server_cert), Path(files.server_key))
            for name in self.services:
                module, audiences = _SERVICES[name]
                public_url = f"https://{HOST}:{sockets[name].getsockname()[1]}"
                # Storage serves the configured account only (any name would be accepted).
                extra = {"account": config.storage_account} if name == "storage" else {}
                app = module.create_app(
                    **extra,
                    validator=self._validator(audiences),
                    rbac=config.rbac(),
                    state_dir=self.state_dir,  # each service keeps its files in a subfolder
                    public_url=public_url,
                    authority=issuer.base_url,
                    tenant_id=config.tenant_id,
                )
                await self._serve(name, app, sockets, tls=pair)
                urls[name] = public_url
        storage = urls["storage"]
        self._urls = LabUrls(
            issuer=issuer.base_url,
            authority=issuer.authority,
            discovery_url=issuer.discovery_url,
            discovery_url_v2=issuer.discovery_url_v2,
            jwks_uri=issuer.jwks_uri,
            imds=self._server_url("imds"),
            identity_endpoint=self._server_url("app_service") + TOKEN_PATH,
            keyvault=urls["keyvault"],
            storage=f"{storage}/{config.storage_account}" if storage else None,
            storage_account=config.storage_account if storage else None,
        )

    def _validator(self, audiences: tuple[str, ...]) -> TokenValidator:
        issuer = self.issuer
        # Key Vault and Storage tokens carry no roles: the services authorize by oid (RBAC).
        trusted = Issuer(
            issuer=issuer.issuer,
            audiences=audiences,
            discovery_url=issuer.discovery_url,
            require_roles_or_scopes=False,
        )
        validator = TokenValidator([trusted], clock=self.clock)
        self._validators.append(validator)  # the services leave closing it to its creator
        return validator

    async def _serve(
        self,
        name: str,
        app: Any,
        sockets: dict[str, Any],
        tls: tuple[Path, Path] | None = None,
    ) -> None:
        self.log(f"  starting {name:<12} ...")
        server = await start_server(name, app, sockets[name], tls=tls, log_level=self.log_level)
        self._servers.append(server)

    async def serve_app(self, name: str, app: Any) -> str:
        """Serve another ASGI app (your API) over http on a free 127.0.0.1 port beside the
        lab; it stops with the lab. Returns its URL."""
        if self._urls is None:
            raise LabError("the lab is not running")
        sock = bind(0, name)
        try:
            server = await start_server(name, app, sock, log_level=self.log_level)
        except BaseException:
            sock.close()
            raise
        self._servers.append(server)
        return server.url

    def _server_url(self, name: str) -> str:
        return next(s.url for s in self._servers if s.name == name)

    async def _check_ready(self) -> None:
        urls = self.urls
        verify: ssl.SSLContext | bool = self.ssl_context() if self.ca_cert else True
        # (name, URL shown, URL probed, headers, expected status)
        probes: list[tuple[str, str, str, dict[str, str], int]] = [
            ("issuer", urls.authority, urls.discovery_url, {}, 200),
            ("imds", urls.imds, urls.imds + "/metadata/identity/info?api-version=2018-02-01",
             {"Metadata": "true"}, 200),
            # Without X-IDENTITY-HEADER the endpoint must refuse: that it answers 400 is the check.
            ("app_service", urls.identity_endpoint, urls.identity_endpoint, {}, 400),
        ]  # fmt: skip
        if urls.keyvault:
            probe = urls.keyvault + "/secrets?api-version=7.5"
            probes.append(("keyvault", urls.keyvault, probe, {}, 401))
        if urls.storage:
            probes.append(("storage", urls.storage, urls.storage + "?comp=list", {}, 401))
        states = []
        async with httpx.AsyncClient(verify=verify, trust_env=False, timeout=10) as client:
            for name, shown, url, headers, expected in probes:
                response = await client.get(url, headers=headers)
                ok = response.status_code == expected
                state = "ready" if ok else f"answered {response.status_code}, not {expected}"
                if name == "issuer" and ok:
                    state += f" (signing key {self.issuer.keys.signing().kid})"
                states.append(ServiceState(name, shown, state, ok))
        self.states = states
        failed = [s for s in states if not s.ok]
        if failed:
            raise LabError(f"{failed[0].name} is not answering as expected: {failed[0].state}")

    def _write_state(self) -> None:
        self.ca_bundle = write_env_files(self)
        info = {
            "pid": os.getpid(),
            "started_at": int(time.time()),
            "urls": asdict(self.urls),
            "tenant_id": self.config.tenant_id,
        }
        (self.state_dir / "lab.json").write_text(json.dumps(info, indent=2) + "\n")

    def readiness_table(self) -> str:
        """The services, their URLs and states, as an aligned text table."""
        rows = [("service", "url", "state"), *((s.name, s.url, s.state) for s in self.states)]
        widths = [max(len(row[i]) for row in rows) for i in range(2)]
        return "\n".join(
            f"  {row[0]:<{widths[0]}}  {row[1]:<{widths[1]}}  {row[2]}" for row in rows
        )

    async def stop(self) -> None:
        """Stop every server (all at once: each waits a shutdown tick) and remove ``lab.json``."""
        servers, self._servers = self._servers, []
        await asyncio.gather(*(server.stop() for server in servers))
        validators, self._validators = self._validators, []
        for validator in validators:
            await validator.aclose()
        (self.state_dir / "lab.json").unlink(missing_ok=True)

    async def __aenter__(self) -> Lab:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    def env(self) -> dict[str, str]:
        """Environment for a client of the lab (what ``$LAB_DIR/env`` exports)."""
        return lab_environment(self)


class LabThread:
    """Run a :class:`Lab` in a background thread with its own event loop.

    For synchronous clients (the Azure SDKs) and tests. ``start()`` returns once every
    service answers and re-raises a startup failure; ``stop()`` shuts the lab down.
    """

    def __init__(self, lab: Lab) -> None:
        self.lab = lab
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._started = threading.Event()
        self._error: BaseException | None = None

    def start(self, timeout: float = 120.0) -> Lab:
        """Start the lab and wait until it is ready."""
        self._thread = threading.Thread(target=self._run, name="lab", daemon=True)
        self._thread.start()
        if not self._started.wait(timeout):
            raise LabError(f"the lab did not start within {timeout:.0f} s")
        if self._error is not None:
            self._thread.join()
            raise self._error
        return self.lab

    def _run(self) -> None:
        asyncio.run(self._main())

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        try:
            await self.lab.start()
        except BaseException as exc:
            self._error = exc
            self._started.set()
            return
        self._started.set()
        try:
            await self._stop.wait()
        finally:
            await self.lab.stop()

    def serve_app(self, name: str, app: Any, timeout: float = 60.0) -> str:
        """:meth:`Lab.serve_app` in the lab's thread; returns the app's URL."""
        if self._loop is None:
            raise LabError("the lab is not running")
        future = asyncio.run_coroutine_threadsafe(self.lab.serve_app(name, app), self._loop)
        return future.result(timeout)

    def stop(self) -> None:
        """Stop the lab and wait for its thread."""
        # Sync SDK clients can leave connections of unread responses to the garbage
        # collector; collecting now closes them instead of stalling the servers' shutdown.
        gc.collect()
        if self._loop is not None and self._stop is not None and self._thread is not None:
            if self._thread.is_alive():
                self._loop.call_soon_threadsafe(self._stop.set)
            self._thread.join(timeout=60)
        self._thread = None

    def __enter__(self) -> Lab:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
