"""The tokenguard command line, against an issuer served on a real loopback socket."""

from __future__ import annotations

import io
import json
import socket
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path

import pytest
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route

import tokenguard
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
    # Identity.to_dict(), as a FastAPI route returning the identity answers it.
    assert out["display_name"] == "tokenguard-vm" and out["is_guest"] is False
    assert "claims" not in out


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


# -- verify: what did not match -------------------------------------------------------


def test_verify_shows_token_audience_against_the_configured_ones(
    served: LocalIssuer, capsys: pytest.CaptureFixture[str]
) -> None:
    token = served.mint("api://x", roles=["R"])
    assert main([*verify_args(served, token), "--jwks-uri", served.jwks_uri]) == 1
    out = json.loads(capsys.readouterr().out)
    assert out == {
        "error": "invalid_token",
        "reason": "wrong_audience",
        "detail": f"token aud 'api://x' is not one of [{VAULT!r}]",
    }


def test_verify_shows_token_issuer_against_the_configured_one(
    served: LocalIssuer, capsys: pytest.CaptureFixture[str]
) -> None:
    token = served.mint(roles=["R"], claims={"iss": "https://sts.windows.net/abd/"})
    assert main([*verify_args(served, token), "--jwks-uri", served.jwks_uri]) == 1
    out = json.loads(capsys.readouterr().out)
    assert out["reason"] == "wrong_issuer"
    assert out["detail"] == (
        f"token iss 'https://sts.windows.net/abd/' is not {served.issuer!r}"
        " (signature not checked: the issuer chooses the keys)"
    )


def test_verify_keys_unavailable_names_the_url_and_cause(
    capsys: pytest.CaptureFixture[str],
) -> None:
    issuer = LocalIssuer()
    url = f"http://127.0.0.1:{closed_port()}/keys"
    assert main(verify_args(issuer, issuer.mint(), "--jwks-uri", url)) == 3
    assert f"JWKS {url}: connection refused" in capsys.readouterr().err


# -- check --------------------------------------------------------------------------


def closed_port() -> int:
    """A 127.0.0.1 port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def check_args(issuer: LocalIssuer, *source: str) -> list[str]:
    return ["check", "--issuer", issuer.issuer, "--audience", VAULT, *source]


def test_check_healthy_issuer(served: LocalIssuer, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(check_args(served, "--discovery-url", served.discovery_url)) == 0
    out = capsys.readouterr().out
    assert f"issuer      {served.issuer}\n" in out
    assert f"jwks_uri    {served.jwks_uri} (from the discovery document)\n" in out
    assert f"  {served.signing_kid}  RSA  RS256\n" in out
    assert (
        "cache       3600 s (the issuer sent Cache-Control: max-age=3600;"
        " kept within 300 s..86400 s)"
    ) in out
    assert out.endswith("OK: 1 signing key(s) loaded\n")


def test_check_json_lists_keys_with_their_issuer_and_the_clamped_lifetime(
    capsys: pytest.CaptureFixture[str],
) -> None:
    issuer = LocalIssuer(jwks_max_age=60)  # under the 300 s floor: clamped up
    kid = issuer.add_key("EC", alg="ES256")
    document = issuer.jwks()
    for jwk in document["keys"]:
        if jwk["kid"] == kid:
            jwk["issuer"] = "https://login.microsoftonline.com/{tenantid}/v2.0"

    def keys(request: object) -> JSONResponse:
        return JSONResponse(document, headers={"cache-control": "max-age=60"})

    app = Starlette(routes=[Route("/keys", keys)])
    with serve(app) as url:
        args = check_args(issuer, "--jwks-uri", f"{url}/keys", "--algorithm", "RS256")
        assert main([*args, "--algorithm", "ES256", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] is True and report["error"] is None
    assert report["jwks_uri"] == f"{url}/keys"
    assert report["cache"]["cache_control"] == "max-age=60"
    assert report["cache"]["sent_seconds"] == 60
    assert report["cache"]["lifetime_seconds"] == 300
    by_kid = {key["kid"]: key for key in report["keys"]}
    assert by_kid[kid] == {
        "kid": kid,
        "kty": "EC",
        "algorithms": ["ES256"],
        "issuer": "https://login.microsoftonline.com/{tenantid}/v2.0",
    }
    assert by_kid[issuer.signing_kid]["algorithms"] == ["RS256"]


def test_check_connection_refused(capsys: pytest.CaptureFixture[str]) -> None:
    issuer = LocalIssuer()
    url = f"http://127.0.0.1:{closed_port()}/tenant/.well-known/openid-configuration"
    assert main(check_args(issuer, "--discovery-url", url)) == 3
    out = capsys.readouterr().out
    assert out.splitlines()[-1] == (
        f"FAILED: keys of {issuer.issuer} unavailable: discovery document {url}:"
        " connection refused (ConnectError)"
    )


def test_check_not_found(served: LocalIssuer, capsys: pytest.CaptureFixture[str]) -> None:
    url = served.discovery_url.replace("openid-configuration", "openid-configuratoin")
    assert main(check_args(served, "--discovery-url", url)) == 3
    out = capsys.readouterr().out
    assert f"discovery document {url}: HTTP status 404 (Not Found)" in out
    assert "OK" not in out


def test_check_discovery_naming_another_issuer(
    served: LocalIssuer, capsys: pytest.CaptureFixture[str]
) -> None:
    typo = served.issuer[:-2] + "x/"
    args = ["check", "--issuer", typo, "--audience", VAULT]
    assert main([*args, "--discovery-url", served.discovery_url, "--json"]) == 3
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] is False and report["keys"] == []
    assert report["error"] == (
        f"keys of {typo} unavailable: discovery document {served.discovery_url}"
        f" names issuer {served.issuer!r} but the Issuer expects {typo!r}"
    )


def test_check_notes_keys_it_skipped(
    served: LocalIssuer, capsys: pytest.CaptureFixture[str]
) -> None:
    args = check_args(served, "--jwks-uri", served.jwks_uri, "--algorithm", "ES256")
    assert main(args) == 3
    out = capsys.readouterr().out
    assert f"note        skipping JWK: kid {served.signing_kid!r}, no allowed algorithm fits" in out
    assert f"FAILED: keys of {served.issuer} unavailable: JWKS {served.jwks_uri}:" in out


def test_check_bad_configuration_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    args = check_args(LocalIssuer(), "--jwks-uri", "http://example.com/keys")
    assert main(args) == 2
    assert "https" in capsys.readouterr().err


# -- --version and --help -------------------------------------------------------------


def test_version_is_the_distribution_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out == f"tokenguard {metadata.version('tokenguard-asgi')}\n"
    assert tokenguard.__version__ == metadata.version("tokenguard-asgi")


def test_version_falls_back_to_the_literal_when_not_installed() -> None:
    code = (
        "import importlib.metadata as m\n"
        "def missing(name):\n"
        "    raise m.PackageNotFoundError(name)\n"
        "m.version = missing\n"
        "import tokenguard\n"
        "print(tokenguard.__version__)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    with open(Path(__file__).parents[1] / "pyproject.toml", "rb") as file:
        declared = tomllib.load(file)["project"]["version"]
    assert done.stdout.strip() == declared


@pytest.mark.parametrize("command", [[], ["check"], ["verify"], ["decode"]])
def test_help_is_plain_text(command: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main([*command, "--help"])
    assert info.value.code == 0
    text = capsys.readouterr().out
    assert text.startswith("usage: tokenguard")
    assert "``" not in text and ":class:" not in text
