"""The issuer's signing keys, kept on disk so a restarted lab signs and publishes the same keys.

Layout under ``$LAB_DIR/keys/`` (directory mode 0700)::

    {kid}.key.pem    the RSA private key (mode 0600)
    {kid}.cert.pem   its self-signed certificate (the JWK's ``x5c``; ``kid`` = ``x5t``)
    schedule.json    when each key is published, starts signing, and leaves the JWKS

A rotation only writes a schedule; which key signs and which keys are published is
computed from the clock, so it survives restarts and tests move time by injecting a clock.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Final

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tokenguard.testing import SigningKey, generate_key, self_signed_certificate

from .._files import write_atomic

__all__ = ["KeyRing", "LabKey", "ScheduledKey", "b64url"]

_SCHEDULE: Final = "schedule.json"


def b64url(data: bytes) -> str:
    """``data`` in base64url without padding, as JOSE writes key ids and token parts."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


@dataclass(frozen=True, kw_only=True)
class ScheduledKey:
    """When a key is published, starts signing, and retires (wall-clock seconds)."""

    kid: str
    created_at: float
    sign_from: float
    retire_at: float | None = None

    def published(self, now: float) -> bool:
        """In the JWKS at ``now``: from creation until retirement."""
        return self.created_at <= now and (self.retire_at is None or now < self.retire_at)


@dataclass(frozen=True)
class LabKey:
    """A signing key with its certificate; ``kid`` is the certificate's SHA-1 thumbprint."""

    kid: str
    private_key: rsa.RSAPrivateKey
    certificate: x509.Certificate

    def public_jwk(self) -> dict[str, Any]:
        """The JWK as Entra publishes it: ``kty, use, kid, x5t, n, e, x5c`` (x5t = kid)."""
        return SigningKey(
            self.kid, "RS256", self.private_key, certificate=self.certificate
        ).public_jwk


def _certificate(key: rsa.RSAPrivateKey, now: float) -> x509.Certificate:
    start = dt.datetime.fromtimestamp(now, dt.UTC) - dt.timedelta(days=1)
    return self_signed_certificate(
        key, "tokenguard lab token signing", not_before=start, days=5 * 365
    )


def _write_private(path: Path, data: bytes) -> None:
    # Created 0600 from the start: the key is never readable by others, not even briefly.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as file:
        file.write(data)
        file.flush()
        os.fsync(file.fileno())


class KeyRing:
    """The issuer's keys in a directory; a new directory gets one key that signs at once."""

    def __init__(self, directory: Path, *, clock: Callable[[], float] = time.time) -> None:
        self.directory = directory
        self.clock = clock
        directory.mkdir(parents=True, exist_ok=True)
        directory.chmod(0o700)
        self.keys: dict[str, LabKey] = {}
        self.schedule: list[ScheduledKey] = []
        self._load()
        if not self.schedule:
            now = clock()
            kid = self._create(now)
            self.schedule = [ScheduledKey(kid=kid, created_at=now, sign_from=now)]
            self._save()

    # -- state ------------------------------------------------------------------

    def _load(self) -> None:
        path = self.directory / _SCHEDULE
        if not path.exists():
            return
        entries = json.loads(path.read_text())["keys"]
        self.schedule = [ScheduledKey(**entry) for entry in entries]
        for entry in self.schedule:
            self.keys[entry.kid] = self._read(entry.kid)

    def _read(self, kid: str) -> LabKey:
        pem = (self.directory / f"{kid}.key.pem").read_bytes()
        private_key = serialization.load_pem_private_key(pem, password=None)
        if not isinstance(private_key, rsa.RSAPrivateKey):
            raise ValueError(f"{kid}: not an RSA key")
        cert = x509.load_pem_x509_certificate((self.directory / f"{kid}.cert.pem").read_bytes())
        return LabKey(kid, private_key, cert)

    def _create(self, now: float) -> str:
        private_key = generate_key("RSA")
        assert isinstance(private_key, rsa.RSAPrivateKey)
        cert = _certificate(private_key, now)
        # kid = x5t, the certificate's SHA-1 thumbprint (SHA-1 by definition, as Entra's).
        kid = b64url(hashlib.sha1(cert.public_bytes(serialization.Encoding.DER)).digest())
        pem = private_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        _write_private(self.directory / f"{kid}.key.pem", pem)
        write_atomic(
            self.directory / f"{kid}.cert.pem", cert.public_bytes(serialization.Encoding.PEM)
        )
        self.keys[kid] = LabKey(kid, private_key, cert)
        return kid

    def _save(self) -> None:
        body = {"keys": [asdict(entry) for entry in self.schedule]}
        write_atomic(self.directory / _SCHEDULE, json.dumps(body, indent=2).encode())

    # -- queries ----------------------------------------------------------------

    def published(self, now: float | None = None) -> list[LabKey]:
        """Keys in the JWKS at ``now``, oldest first."""
        now = self.clock() if now is None else now
        return [self.keys[e.kid] for e in self.schedule if e.published(now)]

    def signing(self, now: float | None = None) -> LabKey:
        """The key that signs at ``now``: the published key that most recently began signing."""
        now = self.clock() if now is None else now
        ready = [e for e in self.schedule if e.published(now) and e.sign_from <= now]
        if not ready:
            raise RuntimeError("no key can sign now (every key retired?)")
        return self.keys[max(ready, key=lambda e: e.sign_from).kid]

    def status(self, now: float | None = None) -> list[dict[str, Any]]:
        """Each key's schedule and its state at ``now`` (``signing``, ``published``, ...)."""
        now = self.clock() if now is None else now
        signing = self.signing(now).kid
        rows = []
        for entry in self.schedule:
            if entry.kid == signing:
                state = "signing"
            elif entry.published(now):
                state = "published" if entry.sign_from > now else "published (old)"
            else:
                state = "retired"
            rows.append({**asdict(entry), "state": state})
        return rows

    # -- changes ----------------------------------------------------------------

    def rotate(self, *, overlap: float, retire_after: float) -> str:
        """Publish a new key now, sign with it after ``overlap`` seconds, and retire every
        older key ``retire_after`` seconds after that. Returns the new kid."""
        if overlap < 0 or retire_after < 0:
            raise ValueError("overlap and retire_after must not be negative")
        now = self.clock()
        kid = self._create(now)
        sign_from = now + overlap
        retire_at = sign_from + retire_after
        self.schedule = [
            e
            if e.retire_at is not None and e.retire_at <= retire_at
            else replace(e, retire_at=retire_at)
            for e in self.schedule
        ]
        self.schedule.append(ScheduledKey(kid=kid, created_at=now, sign_from=sign_from))
        self._save()
        return kid

    def forget_retired(self, now: float | None = None) -> list[str]:
        """Delete the files of keys retired before ``now``; returns their kids."""
        now = self.clock() if now is None else now
        gone = [e for e in self.schedule if e.retire_at is not None and e.retire_at <= now]
        self.schedule = [e for e in self.schedule if e not in gone]
        self._save()
        for entry in gone:
            self.keys.pop(entry.kid, None)
            for suffix in (".key.pem", ".cert.pem"):
                (self.directory / f"{entry.kid}{suffix}").unlink(missing_ok=True)
        return [e.kid for e in gone]
