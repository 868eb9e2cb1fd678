"""The lab CA and server certificate: created once, reused, repaired, and verifiable strictly."""

from __future__ import annotations

import datetime as dt
import ssl
import stat
from pathlib import Path

import pytest
from cryptography import x509
from examples.lab.runtime import TlsFiles, ensure_tls


def _handshake(files: TlsFiles, server_name: str) -> None:
    """A TLS handshake in memory: the client trusts only the lab CA, strictly."""
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(files.server_cert, files.server_key)
    client_ctx = ssl.create_default_context(cafile=str(files.ca_cert))
    client_ctx.verify_flags |= ssl.VERIFY_X509_STRICT
    c_in, c_out, s_in, s_out = (ssl.MemoryBIO() for _ in range(4))
    client = client_ctx.wrap_bio(c_in, c_out, server_hostname=server_name)
    server = server_ctx.wrap_bio(s_in, s_out, server_side=True)
    done = {"client": False, "server": False}
    for _ in range(20):
        for name, end in (("client", client), ("server", server)):
            if not done[name]:
                try:
                    end.do_handshake()
                    done[name] = True
                except ssl.SSLWantReadError:
                    pass
        s_in.write(c_out.read())
        c_in.write(s_out.read())
        if all(done.values()):
            return
    raise AssertionError("handshake did not finish")


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_creates_files_with_private_keys_0600(tmp_path: Path) -> None:
    files = ensure_tls(tmp_path)
    assert files.ca_cert == tmp_path / "tls" / "ca.pem"
    assert _mode(files.server_key) == 0o600
    assert _mode(tmp_path / "tls" / "ca-key.pem") == 0o600
    assert _mode(files.server_cert) == 0o644
    cert = x509.load_pem_x509_certificate(files.server_cert.read_bytes())
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert {str(a) for a in names.get_values_for_type(x509.IPAddress)} == {"127.0.0.1", "::1"}
    assert names.get_values_for_type(x509.DNSName) == ["localhost"]


@pytest.mark.parametrize("server_name", ["127.0.0.1", "localhost", "::1"])
def test_server_certificate_verifies_against_the_ca_strictly(
    tmp_path: Path, server_name: str
) -> None:
    _handshake(ensure_tls(tmp_path), server_name)


def test_other_names_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ssl.SSLCertVerificationError):
        _handshake(ensure_tls(tmp_path), "example.com")


def test_reuses_valid_files(tmp_path: Path) -> None:
    first = ensure_tls(tmp_path)
    before = {p: p.read_bytes() for p in (first.ca_cert, first.server_cert, first.server_key)}
    second = ensure_tls(tmp_path)
    assert second == first
    assert {p: p.read_bytes() for p in before} == before


def test_damaged_server_certificate_is_reissued_by_the_same_ca(tmp_path: Path) -> None:
    files = ensure_tls(tmp_path)
    ca_before = files.ca_cert.read_bytes()
    files.server_cert.write_bytes(b"not a certificate")
    ensure_tls(tmp_path)
    assert files.ca_cert.read_bytes() == ca_before
    _handshake(files, "127.0.0.1")


def test_expiring_server_certificate_is_reissued_by_the_same_ca(tmp_path: Path) -> None:
    # Issued 390 days ago: less than RENEW_BEFORE left of the server certificate's 397.
    files = ensure_tls(tmp_path, now=dt.datetime.now(dt.UTC) - dt.timedelta(days=390))
    ca_before = files.ca_cert.read_bytes()
    ensure_tls(tmp_path)
    renewed = x509.load_pem_x509_certificate(files.server_cert.read_bytes())
    assert renewed.not_valid_after_utc > dt.datetime.now(dt.UTC) + dt.timedelta(days=300)
    assert files.ca_cert.read_bytes() == ca_before  # clients that trust it keep working
    _handshake(files, "127.0.0.1")


def test_damaged_ca_regenerates_everything(tmp_path: Path) -> None:
    files = ensure_tls(tmp_path)
    server_before = files.server_cert.read_bytes()
    (tmp_path / "tls" / "ca-key.pem").write_bytes(b"garbage")
    ensure_tls(tmp_path)
    assert files.server_cert.read_bytes() != server_before
    _handshake(files, "localhost")


def test_loose_key_permissions_cause_a_reissue(tmp_path: Path) -> None:
    files = ensure_tls(tmp_path)
    files.server_key.chmod(0o644)
    ensure_tls(tmp_path)
    assert _mode(files.server_key) == 0o600
