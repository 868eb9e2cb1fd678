"""Durability: SIGKILL a service during a burst of writes; every acknowledged write survives.

Each service runs in its own process (``tests/lab/_serve.py``) on a state directory.
Writer threads use the official SDK clients (no retries) and record a write only once
it was answered with a 2xx. A killer thread sends SIGKILL after enough answers, while
the writers are still sending. The service is started again on the same directory and
every recorded write is read back. A write that was in flight when the process died may
or may not be there; an acknowledged one must be, with the right content.
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Final, TypeVar

import pytest
from azure.core.exceptions import IncompleteReadError, ServiceRequestError, ServiceResponseError
from azure.keyvault.secrets import SecretClient
from azure.storage.blob import BlobServiceClient
from examples.lab.runtime import TlsFiles, ensure_tls
from starlette.applications import Starlette

from tokenguard.testing import LocalIssuer

from .._kit import LabCredential, serve_app, storage_client, vault_client

ROOT = Path(__file__).resolve().parents[3]
WRITERS = 4
KILL_AFTER = 40  # acknowledged writes before the SIGKILL
T = TypeVar("T")


@pytest.fixture(scope="module")
def served_issuer() -> Iterator[LocalIssuer]:
    """A LocalIssuer whose discovery document and JWKS are served on a real socket."""
    issuer = LocalIssuer()

    def app_for(url: str) -> Starlette:
        issuer.base_url = url  # the discovery document names the JWKS under this URL
        return issuer.asgi_app()

    with serve_app(app_for, None):
        yield issuer


@contextlib.contextmanager
def service_process(
    service: str, state_dir: Path, issuer: LocalIssuer, oid: str
) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """Start a service process; yields it and its URL; stops it (if alive) at the end."""
    port_file = state_dir / f"{service}.port"
    port_file.unlink(missing_ok=True)
    log = (state_dir / f"{service}.log").open("ab")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.lab._serve",
            service,
            str(state_dir),
            issuer.issuer,
            issuer.discovery_url,
            oid,
            str(port_file),
        ],
        cwd=ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 60
        while not port_file.exists():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{service} did not start: see {state_dir}/{service}.log")
            time.sleep(0.05)
        yield proc, f"https://127.0.0.1:{port_file.read_text()}"
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        log.close()


@dataclass
class Burst:
    """Acknowledged writes, gathered by writer threads until the service dies."""

    acked: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)
    enough: threading.Event = field(default_factory=threading.Event)
    errors: list[BaseException] = field(default_factory=list)

    def ack(self) -> None:
        with self.lock:
            self.acked += 1
            if self.acked >= KILL_AFTER:
                self.enough.set()


def run_burst(pid: int, writer: Callable[[int, Burst], None]) -> Burst:
    """Run ``writer(i, burst)`` in threads; SIGKILL ``pid`` once enough writes were acked."""
    burst = Burst()
    threads = [threading.Thread(target=writer, args=(i, burst)) for i in range(WRITERS)]
    for thread in threads:
        thread.start()
    burst.enough.wait(timeout=120)
    os.kill(pid, signal.SIGKILL)
    for thread in threads:
        thread.join(timeout=120)
    assert burst.errors == []
    assert burst.acked >= KILL_AFTER
    return burst


#: What a client sees when the service dies under it: refused, reset or cut short.
DIED: Final = (ServiceRequestError, ServiceResponseError, IncompleteReadError, OSError)


def until_failure(
    attempt: Callable[[int], T], record: Callable[[int, T], None], burst: Burst
) -> None:
    """Call ``attempt(seq)`` for seq = 0, 1, ... until the service dies; record each
    success. Any other error is kept in ``burst.errors`` (and fails the test)."""
    seq = 0
    while True:
        try:
            result = attempt(seq)
        except DIED:
            return
        except Exception as exc:
            burst.errors.append(exc)
            return
        record(seq, result)
        seq += 1


@dataclass(frozen=True)
class Crash:
    """One crash test: its state directory (and TLS files in it), and the identity its
    writers use, which the service grants the writer role."""

    state_dir: Path
    issuer: LocalIssuer
    oid: str
    tls: TlsFiles
    credential: LabCredential

    @contextlib.contextmanager
    def killed_and_restarted(
        self,
        service: str,
        writer: Callable[[str, int, Burst], None],
        prepare: Callable[[str], None] = lambda url: None,
    ) -> Iterator[str]:
        """Start ``service``, ``prepare(url)`` it, run ``writer(url, i, burst)`` in threads
        until the SIGKILL (:func:`run_burst`); yield the URL of the service started again
        on the same state."""
        with service_process(service, self.state_dir, self.issuer, self.oid) as (proc, url):
            prepare(url)
            run_burst(proc.pid, partial(writer, url))
            assert proc.wait(timeout=60) == -signal.SIGKILL
        with service_process(service, self.state_dir, self.issuer, self.oid) as (_, url):
            yield url

    def vault(self, url: str) -> SecretClient:
        """An SDK client of the Key Vault at ``url``, as the writers' identity."""
        return vault_client(url, self.tls, self.credential)

    def storage(self, url: str) -> BlobServiceClient:
        """An SDK client of the Storage account at ``url``, as the writers' identity."""
        return storage_client(f"{url}/labstorage", self.tls, self.credential)


@pytest.fixture
def crash(tmp_path: Path, served_issuer: LocalIssuer) -> Crash:
    oid = str(uuid.uuid4())
    credential = LabCredential(served_issuer, oid)
    return Crash(tmp_path, served_issuer, oid, ensure_tls(tmp_path), credential)


# -- Key Vault -------------------------------------------------------------------------


def test_key_vault_keeps_every_acknowledged_secret(crash: Crash) -> None:
    acked: dict[int, list[tuple[str, str]]] = {i: [] for i in range(WRITERS)}  # (version, value)
    in_flight: dict[int, str] = {}

    def writer(url: str, i: int, burst: Burst) -> None:
        with crash.vault(url) as client:

            def attempt(seq: int) -> str:
                in_flight[i] = f"writer {i} value {seq} " + "x" * (seq % 50)
                saved = client.set_secret(f"writer-{i}", in_flight[i])
                return str(saved.properties.version)

            def record(seq: int, version: str) -> None:
                acked[i].append((version, in_flight[i]))
                burst.ack()

            until_failure(attempt, record, burst)

    with (
        crash.killed_and_restarted("keyvault", writer) as url,
        crash.vault(url) as client,
    ):
        for i, writes in acked.items():
            for version, value in writes:
                assert client.get_secret(f"writer-{i}", version).value == value
            latest = client.get_secret(f"writer-{i}").value
            # The last acknowledged value, or the one in flight when the process died.
            assert latest in {writes[-1][1] if writes else None, in_flight.get(i)}
            versions = list(client.list_properties_of_secret_versions(f"writer-{i}"))
            assert len(versions) in (len(writes), len(writes) + 1)
        del client
        gc.collect()


# -- Blob Storage ------------------------------------------------------------------------


def test_blob_storage_keeps_every_acknowledged_blob(crash: Crash) -> None:
    acked: dict[str, bytes] = {}  # blob name -> MD5 of its acknowledged content
    latest_acked: dict[int, bytes] = {}
    latest_in_flight: dict[int, bytes] = {}

    def create_container(url: str) -> None:
        with crash.storage(url) as service:
            service.create_container("burst")

    def writer(url: str, i: int, burst: Burst) -> None:
        with crash.storage(url) as service:
            box = service.get_container_client("burst")

            def attempt(seq: int) -> str:
                data = os.urandom(1024 + (seq * 7919 + i * 104729) % (96 * 1024))
                name = f"w{i}/{seq:05}"
                box.upload_blob(name, data)
                acked[name] = hashlib.md5(data).digest()
                latest_in_flight[i] = data
                box.upload_blob(f"w{i}/latest", data, overwrite=True)
                return name

            def record(seq: int, name: str) -> None:
                latest_acked[i] = latest_in_flight[i]
                burst.ack()

            until_failure(attempt, record, burst)

    with (
        crash.killed_and_restarted("storage", writer, create_container) as url,
        crash.storage(url) as service,
    ):
        box = service.get_container_client("burst")
        for name, digest in acked.items():
            assert hashlib.md5(box.download_blob(name).readall()).digest() == digest, name
        for i, data in latest_acked.items():
            latest = box.download_blob(f"w{i}/latest").readall()
            assert latest in (data, latest_in_flight[i])
        # Restart swept unfinished uploads and replaced bodies: one file per blob.
        listed = list(box.list_blobs())
        assert len(os.listdir(crash.state_dir / "storage" / "blobs")) == len(listed)
        assert os.listdir(crash.state_dir / "storage" / "tmp") == []
        del box, service
        gc.collect()
