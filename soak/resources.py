"""The toy Key Vault and Storage under concurrent Azure SDK clients from several identities.

The whole lab runs on 127.0.0.1 (``examples.lab``); each identity gets its tokens from
the lab's IMDS through ``ManagedIdentityCredential``, exactly as on a VM:

- the VM's identity (Key Vault Secrets Officer, Storage Blob Data Contributor) writes
  secrets and blobs from several threads and records every write the SDK acknowledged;
- ``reader-id`` (Secrets User, Blob Reader) reads them concurrently, and tries to write
  (must be refused);
- ``norole-id`` (no role) tries to read them (must always be refused).

At the end the VM identity reads back every acknowledged write: nothing may be lost.
"""

from __future__ import annotations

import contextlib
import os
import random
import secrets
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from azure.core.exceptions import HttpResponseError, ResourceExistsError
from azure.identity import ManagedIdentityCredential
from azure.keyvault.secrets import SecretClient
from azure.storage.blob import BlobServiceClient
from examples.lab.runtime import Lab, LabThread

__all__ = ["ResourceReport", "resource_soak"]

CONTAINER = "soak"


@dataclass
class ResourceReport:
    """What the resource soak measured."""

    duration: float
    operations: Counter[str] = field(default_factory=Counter)
    acknowledged_secrets: dict[str, str] = field(default_factory=dict)
    acknowledged_blobs: dict[str, bytes] = field(default_factory=dict)
    cross_identity_successes: Counter[str] = field(default_factory=Counter)
    lost: list[str] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def count(self, what: str) -> None:
        with self.lock:
            self.operations[what] += 1

    def failures(self) -> list[str]:
        """Every violated promise, in words."""
        found = []
        if self.cross_identity_successes:
            found.append(f"refused operations succeeded: {dict(self.cross_identity_successes)}")
        if self.lost:
            found.append(f"{len(self.lost)} acknowledged writes lost: {self.lost[:5]}")
        if self.errors:
            found.append(f"unexpected errors: {dict(self.errors)}")
        return found

    def table(self) -> str:
        """The report as Markdown."""
        lines = [
            "| measure | value |",
            "|---|---|",
            f"| duration | {self.duration:.0f} s |",
            f"| acknowledged writes | {len(self.acknowledged_secrets)} secrets, "
            f"{len(self.acknowledged_blobs)} blobs |",
            f"| lost acknowledged writes | {len(self.lost)} |",
            "| refused operations that succeeded | "
            f"{sum(self.cross_identity_successes.values())} |",
            f"| unexpected errors | {sum(self.errors.values())} |",
            "\n| identity: operation -> outcome | count |\n|---|---|",
        ]
        lines += [f"| {what} | {n} |" for what, n in sorted(self.operations.items())]
        return "\n".join(lines)


class _Identity:
    """One identity's SDK clients (sharing one credential, as an app would)."""

    def __init__(self, lab: Lab, name: str, client_id: str | None) -> None:
        assert lab.urls.keyvault is not None
        assert lab.urls.storage is not None
        ca = str(lab.ca_cert)
        self.name = name
        self.credential = ManagedIdentityCredential(client_id=client_id)
        self.secrets = SecretClient(
            lab.urls.keyvault,
            self.credential,
            connection_verify=ca,
            verify_challenge_resource=False,
        )
        self.service = BlobServiceClient(lab.urls.storage, self.credential, connection_verify=ca)
        self.blobs = self.service.get_container_client(CONTAINER)

    def close(self) -> None:
        self.secrets.close()
        self.blobs.close()
        self.service.close()
        self.credential.close()


def _expect_refused(report: ResourceReport, who: str, what: str, call: Callable[[], Any]) -> None:
    try:
        call()
    except HttpResponseError as exc:
        report.count(f"{who}: {what} -> {exc.status_code}")
        if exc.status_code != 403:
            with report.lock:
                report.errors[f"{who} {what}: {exc.status_code}"] += 1
        return
    report.count(f"{who}: {what} -> SUCCEEDED")
    with report.lock:
        report.cross_identity_successes[f"{who} {what}"] += 1


def _writer(report: ResourceReport, officer: _Identity, worker: int, deadline: float) -> None:
    i = 0
    while time.monotonic() < deadline:
        i += 1
        name = f"soak-{worker}-{i}"
        value = secrets.token_urlsafe(16)
        try:
            officer.secrets.set_secret(name, value)
            with report.lock:
                report.acknowledged_secrets[name] = value
            report.count("officer: set_secret -> ok")
            data = os.urandom(random.randint(1, 4096))
            officer.blobs.upload_blob(f"{name}.bin", data, overwrite=True)
            with report.lock:
                report.acknowledged_blobs[f"{name}.bin"] = data
            report.count("officer: upload_blob -> ok")
        except HttpResponseError as exc:
            with report.lock:
                report.errors[f"officer write: {exc.status_code}"] += 1


def _pick(report: ResourceReport) -> tuple[str | None, str | None]:
    with report.lock:
        names = list(report.acknowledged_secrets)
        blobs = list(report.acknowledged_blobs)
    rng = random.Random()
    return (rng.choice(names) if names else None, rng.choice(blobs) if blobs else None)


def _picks(report: ResourceReport, deadline: float) -> Iterator[tuple[str, str]]:
    """An acknowledged secret name and blob name, picked afresh each time, until
    ``deadline`` (waiting while there is none of either yet)."""
    while time.monotonic() < deadline:
        name, blob = _pick(report)
        if name is None or blob is None:
            time.sleep(0.05)
            continue
        yield name, blob


def _reader(report: ResourceReport, reader: _Identity, deadline: float) -> None:
    for name, blob in _picks(report, deadline):
        try:
            reader.secrets.get_secret(name)
            report.count("reader: get_secret -> ok")
            reader.blobs.download_blob(blob).readall()
            report.count("reader: download_blob -> ok")
        except HttpResponseError as exc:
            with report.lock:
                report.errors[f"reader read: {exc.status_code}"] += 1
        _expect_refused(
            report, "reader", "set_secret", partial(reader.secrets.set_secret, name, "x")
        )
        _expect_refused(
            report,
            "reader",
            "upload_blob",
            partial(reader.blobs.upload_blob, blob, b"x", overwrite=True),
        )


def _read_blob(identity: _Identity, blob: str) -> bytes:
    return identity.blobs.download_blob(blob).readall()


def _outsider(report: ResourceReport, outsider: _Identity, deadline: float) -> None:
    for name, blob in _picks(report, deadline):
        _expect_refused(report, "norole", "get_secret", partial(outsider.secrets.get_secret, name))
        _expect_refused(report, "norole", "download_blob", partial(_read_blob, outsider, blob))


def _verify(report: ResourceReport, officer: _Identity) -> None:
    """Read back every acknowledged write (in parallel: it is the bulk of the requests)."""

    def secret_kept(item: tuple[str, str]) -> str | None:
        return None if officer.secrets.get_secret(item[0]).value == item[1] else item[0]

    def blob_kept(item: tuple[str, bytes]) -> str | None:
        return None if _read_blob(officer, item[0]) == item[1] else item[0]

    with ThreadPoolExecutor(max_workers=4) as pool:
        lost = list(pool.map(secret_kept, sorted(report.acknowledged_secrets.items())))
        lost += pool.map(blob_kept, sorted(report.acknowledged_blobs.items()))
    report.lost = [name for name in lost if name is not None]


def resource_soak(duration: float = 30.0, writers: int = 3) -> ResourceReport:
    """Run the toy Key Vault and Storage soak for ``duration`` seconds."""
    report = ResourceReport(duration)
    saved = os.environ.get("AZURE_POD_IDENTITY_AUTHORITY_HOST")
    with (
        tempfile.TemporaryDirectory(prefix="tokenguard-soak-lab-") as folder,
        LabThread(Lab(Path(folder), base_port=0, log=None)) as lab,
    ):
        os.environ["AZURE_POD_IDENTITY_AUTHORITY_HOST"] = lab.urls.imds
        ids = {i.name: i.client_id for i in lab.config.identities}
        officer = _Identity(lab, "officer", None)
        reader = _Identity(lab, "reader", ids["reader-id"])
        outsider = _Identity(lab, "norole", ids["norole-id"])
        try:
            with contextlib.suppress(ResourceExistsError):
                officer.blobs.create_container()
            deadline = time.monotonic() + duration
            with ThreadPoolExecutor(max_workers=writers + 2) as pool:
                jobs = [pool.submit(_writer, report, officer, w, deadline) for w in range(writers)]
                jobs.append(pool.submit(_reader, report, reader, deadline))
                jobs.append(pool.submit(_outsider, report, outsider, deadline))
                for job in jobs:
                    job.result()
            _verify(report, officer)
        finally:
            for identity in (officer, reader, outsider):
                identity.close()
            if saved is None:
                os.environ.pop("AZURE_POD_IDENTITY_AUTHORITY_HOST", None)
            else:
                os.environ["AZURE_POD_IDENTITY_AUTHORITY_HOST"] = saved
    return report
