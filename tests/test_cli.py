"""The tokenguard command line, against an issuer served on a real loopback socket."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from collections.abc import Iterator

import pytest

from tokenguard._cli import main
from tokenguard.testing import LocalIssuer

from .helpers import serve

VAULT = "https://vault.azure.net"


@pytest.fixture(scope="module")
def served() -> Iterator[LocalIssuer]:
    issuer = LocalIssuer()
    with serve(issuer.asgi_app()) as url:
        issuer.base_url = url
        yield issuer


def verify_args(issuer: LocalIssuer, token: str, *extra: str) -> list[str]:
    return ["verify", token, "--issuer", issuer.issuer, "--audience", VAULT, *extra]


def test_verify_prints_identity(served: LocalIssuer, capsys: pytest.CaptureFixture[str]) -> None:
    token = served.mint(roles=["R"], object_id="oid-9")
    assert main([*verify_args(served, token), "--discovery-url", served.discovery_url]) == 0
    out = json.loads(capsys.readouterr().out)
    assert (
        out["kind"] == "managed_identity" and out["object_id"] == "oid-9" and out["roles"] == ["R"]
    )


def test_verify_with_jwks_uri_and_stdin(
    served: LocalIssuer, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO(served.mint(roles=["R"]) + "\n"))
    args = [*verify_args(served, "-"), "--jwks-uri", served.jwks_uri, "--algorithm", "RS256"]
    assert main(args) == 0
    assert json.loads(capsys.readouterr().out)["audience"] == VAULT


def test_verify_rejection_exits_1(served: LocalIssuer, capsys: pytest.CaptureFixture[str]) -> None:
    token = served.forge()
    assert main([*verify_args(served, token), "--jwks-uri", served.jwks_uri]) == 1
    out = capsys.readouterr().out
    assert json.loads(out) == {"error": "invalid_token", "reason": "bad_signature"}
    assert token not in out


def test_verify_refuses_a_token_that_grants_nothing_unless_allowed(
    served: LocalIssuer, capsys: pytest.CaptureFixture[str]
) -> None:
    token = served.mint()  # a managed identity's Key Vault token: no roles, no scp
    args = [*verify_args(served, token), "--jwks-uri", served.jwks_uri]
    assert main(args) == 1
    assert json.loads(capsys.readouterr().out) == {
        "error": "invalid_token",
        "reason": "no_permissions",
    }
    assert main([*args, "--allow-no-permissions"]) == 0
    assert json.loads(capsys.readouterr().out)["roles"] == []


def test_verify_keys_unavailable_exits_3(capsys: pytest.CaptureFixture[str]) -> None:
    issuer = LocalIssuer()
    args = verify_args(issuer, issuer.mint(), "--jwks-uri", "http://127.0.0.1:9/keys")
    assert main(args) == 3
    assert json.loads(capsys.readouterr().out)["error"] == "keys_unavailable"


def test_verify_bad_configuration_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    issuer = LocalIssuer()
    args = verify_args(issuer, "t", "--jwks-uri", "http://example.com/keys")
    assert main(args) == 2
    assert "https" in capsys.readouterr().err


def test_decode_shows_unverified_contents(capsys: pytest.CaptureFixture[str]) -> None:
    issuer = LocalIssuer()
    assert main(["decode", issuer.mint(lifetime=7200)]) == 0
    captured = capsys.readouterr()
    out = json.loads(captured.out)
    assert out["verified"] is False
    assert out["header"]["alg"] == "RS256"
    assert out["expiry"].startswith("expires in 1h 59m")
    assert "UNVERIFIED" in captured.err
    assert main(["decode", issuer.mint(lifetime=-100)]) == 0
    assert json.loads(capsys.readouterr().out)["expiry"].startswith("expired 1m 40s ago")
    assert main(["decode", "garbage"]) == 1
    assert json.loads(capsys.readouterr().out)["reason"] == "malformed"


def test_module_entry_point() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "tokenguard", "decode", LocalIssuer().mint(claims={"exp": None})],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0
    assert "expiry" not in json.loads(done.stdout)


def test_python_dash_m(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    import runpy

    monkeypatch.setattr(sys, "argv", ["tokenguard", "decode", "garbage"])
    with pytest.raises(SystemExit) as info:
        runpy.run_module("tokenguard", run_name="__main__")
    assert info.value.code == 1
    assert "malformed" in capsys.readouterr().out
