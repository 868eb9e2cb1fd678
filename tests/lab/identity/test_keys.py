"""The issuer's key ring: files on disk, Entra-shaped JWKs, and the rotation schedule."""

from __future__ import annotations

import base64
import hashlib
import stat
import time
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from examples.lab.identity import KeyRing

from ...helpers import FakeClock
from .conftest import copy_keys

pytestmark = pytest.mark.lab


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_new_ring_has_one_signing_key_with_private_files(key_dir: Path) -> None:
    ring = KeyRing(key_dir)
    [key] = ring.published()
    assert ring.signing().kid == key.kid
    assert _mode(key_dir) == 0o700
    assert _mode(key_dir / f"{key.kid}.key.pem") == 0o600
    assert (key_dir / f"{key.kid}.cert.pem").exists()
    assert (key_dir / "schedule.json").exists()


def test_kid_is_the_certificate_thumbprint_and_the_jwk_is_entra_shaped(key_dir: Path) -> None:
    key = KeyRing(key_dir).signing()
    der = key.certificate.public_bytes(serialization.Encoding.DER)
    thumbprint = base64.urlsafe_b64encode(hashlib.sha1(der).digest()).rstrip(b"=").decode()
    assert key.kid == thumbprint
    jwk = key.public_jwk()
    assert list(jwk) == ["kty", "use", "kid", "x5t", "n", "e", "x5c"]
    assert (jwk["kty"], jwk["use"], jwk["kid"], jwk["x5t"], jwk["e"]) == (
        "RSA",
        "sig",
        key.kid,
        key.kid,
        "AQAB",
    )
    assert base64.b64decode(jwk["x5c"][0]) == der


def test_keys_survive_a_restart(key_dir: Path, tmp_path: Path) -> None:
    first = KeyRing(copy_keys(key_dir, tmp_path / "keys"))
    kid = first.rotate(overlap=0, retire_after=3600)
    again = KeyRing(tmp_path / "keys")
    assert again.signing().kid == kid
    assert [k.kid for k in again.published()] == [k.kid for k in first.published()]
    assert again.signing().public_jwk()["n"] == first.signing().public_jwk()["n"]


def test_rotation_publishes_first_signs_after_the_overlap_then_retires(
    key_dir: Path, tmp_path: Path
) -> None:
    clock = FakeClock(time.time())
    ring = KeyRing(copy_keys(key_dir, tmp_path / "keys"), clock=clock)
    old = ring.signing().kid
    new = ring.rotate(overlap=60, retire_after=30)
    assert [k.kid for k in ring.published()] == [old, new]
    assert ring.signing().kid == old
    assert [row["state"] for row in ring.status()] == ["signing", "published"]
    clock.advance(59)
    assert ring.signing().kid == old
    clock.advance(1)
    assert ring.signing().kid == new
    assert [row["state"] for row in ring.status()] == ["published (old)", "signing"]
    clock.advance(29)
    assert [k.kid for k in ring.published()] == [old, new]
    clock.advance(1)
    assert [k.kid for k in ring.published()] == [new]
    assert [row["state"] for row in ring.status()] == ["retired", "signing"]
    assert ring.forget_retired() == [old]
    assert not (tmp_path / "keys" / f"{old}.key.pem").exists()
    assert [e.kid for e in KeyRing(tmp_path / "keys", clock=clock).schedule] == [new]


def test_a_second_rotation_keeps_the_earlier_retirement(key_dir: Path, tmp_path: Path) -> None:
    clock = FakeClock(time.time())
    ring = KeyRing(copy_keys(key_dir, tmp_path / "keys"), clock=clock)
    first = ring.signing().kid
    second = ring.rotate(overlap=0, retire_after=100)
    clock.advance(10)
    third = ring.rotate(overlap=0, retire_after=1000)
    retire = {e.kid: e.retire_at for e in ring.schedule}
    assert retire[first] == clock.now - 10 + 100
    assert retire[second] == clock.now + 1000
    assert retire[third] is None
    assert ring.signing().kid == third


def test_rotation_refuses_negative_times(key_dir: Path, tmp_path: Path) -> None:
    ring = KeyRing(copy_keys(key_dir, tmp_path / "keys"))
    with pytest.raises(ValueError, match="must not be negative"):
        ring.rotate(overlap=-1, retire_after=0)
    assert len(ring.schedule) == 1
