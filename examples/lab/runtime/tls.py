"""The lab's TLS material: a local CA and a server certificate for the loopback names.

The Azure SDKs refuse bearer tokens over plain http, so the toy Key Vault and Storage
speak https on 127.0.0.1. :func:`ensure_tls` creates, once, under ``state_dir/tls/``::

    ca.pem          the lab CA certificate (give it to clients: ``connection_verify=``,
                    ``REQUESTS_CA_BUNDLE`` or ``SSL_CERT_FILE``)
    ca-key.pem      its private key (mode 0600)
    server.pem      the server certificate, issued by the CA, for 127.0.0.1, ::1, localhost
    server-key.pem  its private key (mode 0600)

and reuses them while they are valid. The certificates follow RFC 5280 closely enough
for strict verifiers (Python 3.13's ``VERIFY_X509_STRICT``): key identifiers, critical
basic constraints and key usage, and the names in ``subjectAltName``.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import ipaddress
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from .._files import write_atomic

__all__ = ["SERVER_NAMES", "TlsFiles", "ensure_tls"]

#: The names the server certificate covers.
SERVER_NAMES: Final = ("localhost", "127.0.0.1", "::1")
CA_LIFETIME: Final = dt.timedelta(days=3650)
SERVER_LIFETIME: Final = dt.timedelta(days=397)  # the CA/Browser Forum maximum
#: Reissue a certificate that has less than this left.
RENEW_BEFORE: Final = dt.timedelta(days=30)
_BACKDATE: Final = dt.timedelta(minutes=5)  # tolerate small clock differences


@dataclass(frozen=True)
class TlsFiles:
    """Paths of the lab's TLS files."""

    ca_cert: Path
    server_cert: Path
    server_key: Path


def ensure_tls(state_dir: Path, *, now: dt.datetime | None = None) -> TlsFiles:
    """Create the lab CA and server certificate under ``state_dir/tls/`` unless valid ones exist.

    A valid CA is kept even when the server certificate is reissued, so clients that
    already trust ``ca.pem`` keep working. Safe to call from several processes at once.
    ``now`` (default: the current time) is when validity is judged and new certificates
    start.
    """
    tls_dir = Path(state_dir) / "tls"
    tls_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    files = TlsFiles(tls_dir / "ca.pem", tls_dir / "server.pem", tls_dir / "server-key.pem")
    ca_key_path = tls_dir / "ca-key.pem"
    with _locked(tls_dir / ".lock"):
        now = now or dt.datetime.now(dt.UTC)
        ca = _load_ca(files.ca_cert, ca_key_path, now)
        if ca is None:
            ca = _new_ca(now)
            write_atomic(ca_key_path, _key_pem(ca[1]), private=True)
            write_atomic(files.ca_cert, ca[0].public_bytes(serialization.Encoding.PEM))
        elif _server_valid(files, ca[0], now):
            return files
        cert, key = _new_server_cert(ca, now)
        write_atomic(files.server_key, _key_pem(key), private=True)
        write_atomic(files.server_cert, cert.public_bytes(serialization.Encoding.PEM))
    return files


# -- checks ------------------------------------------------------------------


def _load_ca(
    cert_path: Path, key_path: Path, now: dt.datetime
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey] | None:
    try:
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    except (OSError, ValueError, TypeError):
        return None
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        return None
    if cert.public_key() != key.public_key() or not _current(cert, now):
        return None
    try:
        constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        return None
    return (cert, key) if constraints.ca else None


def _server_valid(files: TlsFiles, ca: x509.Certificate, now: dt.datetime) -> bool:
    try:
        cert = x509.load_pem_x509_certificate(files.server_cert.read_bytes())
        key = serialization.load_pem_private_key(files.server_key.read_bytes(), password=None)
        cert.verify_directly_issued_by(ca)
        names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (OSError, ValueError, TypeError, InvalidSignature, x509.ExtensionNotFound):
        return False
    covered = {str(n) for n in names.get_values_for_type(x509.IPAddress)}
    covered.update(names.get_values_for_type(x509.DNSName))
    return (
        cert.public_key() == key.public_key()
        and _current(cert, now)
        and covered.issuperset(SERVER_NAMES)
        and files.server_key.stat().st_mode & 0o077 == 0
    )


def _current(cert: x509.Certificate, now: dt.datetime) -> bool:
    return cert.not_valid_before_utc <= now and now + RENEW_BEFORE < cert.not_valid_after_utc


# -- issuing -----------------------------------------------------------------


def _new_ca(now: dt.datetime) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "tokenguard lab"),
            x509.NameAttribute(NameOID.COMMON_NAME, "tokenguard lab CA"),
        ]
    )
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _BACKDATE)
        .not_valid_after(now + CA_LIFETIME)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(cert_sign=True), critical=True)
        .add_extension(ski, critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False
        )
        .sign(key, hashes.SHA256())
    )
    return cert, key


def _new_server_cert(
    ca: tuple[x509.Certificate, ec.EllipticCurvePrivateKey], now: dt.datetime
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    ca_cert, ca_key = ca
    key = ec.generate_private_key(ec.SECP256R1())
    names: list[x509.GeneralName] = [x509.DNSName("localhost")]
    names += [x509.IPAddress(ipaddress.ip_address(a)) for a in ("127.0.0.1", "::1")]
    ca_ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    not_after = min(now + SERVER_LIFETIME, ca_cert.not_valid_after_utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _BACKDATE)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(cert_sign=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    return cert, key


def _key_usage(*, cert_sign: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=not cert_sign,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=cert_sign,
        crl_sign=cert_sign,
        encipher_only=False,
        decipher_only=False,
    )


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


# -- files -------------------------------------------------------------------


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive lock across processes, so two services starting together agree."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock
