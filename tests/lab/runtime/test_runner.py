"""The lab runner: env files, readiness, busy ports, the command line, and a clean stop."""

from __future__ import annotations

import json
import os
import shlex
import signal
import socket
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import jwt
import pytest
from examples.lab.__main__ import main as lab_main
from examples.lab.identity import LabConfig
from examples.lab.runtime import Lab, LabError, LabThread

pytestmark = pytest.mark.lab

ROOT = Path(__file__).resolve().parents[3]
API = "api://tokenguard-lab-api"


def read_env(path: Path) -> dict[str, str]:
    """The ``export NAME=value`` lines of a file, as a shell would read them."""
    env = {}
    for line in path.read_text().splitlines():
        if line.startswith("export "):
            name, _, value = line[len("export ") :].partition("=")
            env[name] = shlex.split(value)[0]
    return env


def test_env_file_points_a_client_at_the_lab(running_lab: Lab) -> None:
    env = read_env(running_lab.state_dir / "env")
    assert env == running_lab.env()
    assert env["AZURE_POD_IDENTITY_AUTHORITY_HOST"] == running_lab.urls.imds
    assert env["LAB_ISSUER"] == "https://sts.windows.net/72f988bf-0000-4000-8000-00000000ab1e/"
    assert env["LAB_DISCOVERY_URL"] == running_lab.urls.discovery_url
    assert "IDENTITY_ENDPOINT" not in env  # it would switch azure-identity to App Service
    discovery = httpx.get(env["LAB_DISCOVERY_URL"], trust_env=False).json()
    assert discovery["issuer"] == env["LAB_ISSUER"]
    if running_lab.urls.keyvault is not None:
        assert env["LAB_KEYVAULT_URL"] == running_lab.urls.keyvault
        assert env["LAB_STORAGE_URL"].endswith("/labstorage")
        bundle = Path(env["REQUESTS_CA_BUNDLE"]).read_text()
        assert Path(env["LAB_CA_CERT"]).read_text().strip() in bundle
        assert bundle.count("BEGIN CERTIFICATE") > 1  # the public roots stay trusted
        assert env["SSL_CERT_FILE"] == env["REQUESTS_CA_BUNDLE"]


def test_app_service_env_file_is_private(running_lab: Lab) -> None:
    path = running_lab.state_dir / "env.appservice"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    env = read_env(path)
    assert env == {
        "IDENTITY_ENDPOINT": running_lab.urls.identity_endpoint,
        "IDENTITY_HEADER": running_lab.identity_header,
    }
    assert (running_lab.state_dir / "identity-header").read_text().strip() == env["IDENTITY_HEADER"]


def test_lab_json_and_readiness_table(running_lab: Lab) -> None:
    info = json.loads((running_lab.state_dir / "lab.json").read_text())
    assert info["pid"] == os.getpid()
    assert info["urls"]["imds"] == running_lab.urls.imds
    table = running_lab.readiness_table()
    for state in running_lab.states:
        assert state.name in table
    names = {s.name for s in running_lab.states}
    assert names == {"issuer", "imds", "app_service", *running_lab.services}
    assert all(s.ok and s.state.startswith("ready") for s in running_lab.states)


def test_stop_removes_lab_json_and_frees_the_ports(tmp_path: Path, roomy_config: LabConfig) -> None:
    lab = Lab(tmp_path, config=roomy_config, base_port=0, log=None, services=())
    with LabThread(lab):
        port = int(lab.urls.imds.rsplit(":", 1)[1])
        assert (tmp_path / "lab.json").exists()
    assert not (tmp_path / "lab.json").exists()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))  # free again


def test_a_busy_port_is_reported_before_anything_starts(
    tmp_path: Path, roomy_config: LabConfig
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        lab = Lab(tmp_path, config=roomy_config, base_port=port, log=None, services=())
        with pytest.raises(LabError, match=rf"cannot listen on 127.0.0.1:{port}.*LAB_PORT"):
            LabThread(lab).start()
    assert not (tmp_path / "keys").exists()  # nothing started


def test_base_port_must_leave_room_for_five_services(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="base_port"):
        Lab(tmp_path, base_port=65_534)


@pytest.fixture
def cli_lab(
    tmp_path: Path, roomy_config: LabConfig, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Lab]:
    """A running lab (no toy services) that ``python -m examples.lab`` finds by LAB_DIR."""
    monkeypatch.setenv("LAB_DIR", str(tmp_path))
    with LabThread(Lab(tmp_path, config=roomy_config, base_port=0, log=None, services=())) as lab:
        yield lab


def test_cli_keys_and_rotate_talk_to_the_running_lab(
    cli_lab: Lab, capsys: pytest.CaptureFixture[str]
) -> None:
    old = cli_lab.issuer.keys.signing().kid
    assert lab_main(["keys"]) == 0
    assert old in capsys.readouterr().out
    assert lab_main(["rotate", "--overlap", "0", "--retire-after", "0"]) == 0
    out = capsys.readouterr().out
    new = cli_lab.issuer.keys.signing().kid
    assert new != old
    assert f"new key {new} published" in out
    keys = httpx.get(cli_lab.urls.jwks_uri, trust_env=False).json()["keys"]
    assert [k["kid"] for k in keys] == [new]


def test_cli_apps_assign_and_unassign_change_the_next_api_token(
    cli_lab: Lab, capsys: pytest.CaptureFixture[str]
) -> None:
    norole = cli_lab.config.identity("norole-id")

    def api_roles() -> list[str] | None:
        answer = httpx.get(
            cli_lab.urls.imds + "/metadata/identity/oauth2/token",
            params={"api-version": "2018-02-01", "resource": API, "client_id": norole.client_id},
            headers={"Metadata": "true"},
            trust_env=False,
        )
        roles: list[str] | None = jwt.decode(
            answer.json()["access_token"], options={"verify_signature": False}
        ).get("roles")
        return roles

    assert lab_main(["apps"]) == 0
    listed = capsys.readouterr().out
    assert "tokenguard-lab-api  api://tokenguard-lab-api" in listed
    assert "roles: Secrets.Read, Secrets.Write" in listed
    assert api_roles() is None
    assert lab_main(["assign", "norole-id", "tokenguard-lab-api", "Secrets.Read"]) == 0
    assert f"{norole.object_id}  tokenguard-lab-api  Secrets.Read" in capsys.readouterr().out
    assert api_roles() == ["Secrets.Read"]
    assert lab_main(["unassign", "norole-id", "tokenguard-lab-api", "Secrets.Read"]) == 0
    assert api_roles() is None
    capsys.readouterr()
    assert lab_main(["assign", "norole-id", "tokenguard-lab-api", "Secrets.Admin"]) == 1
    assert "has no app role 'Secrets.Admin'" in capsys.readouterr().err


def test_cli_without_a_running_lab(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("LAB_DIR", str(tmp_path))
    assert lab_main(["rotate"]) == 1
    assert "no running lab found" in capsys.readouterr().err


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_foreground_lab_stops_cleanly_on_a_signal(tmp_path: Path, sig: signal.Signals) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AZURE_", "IDENTITY_"))}
    env.update({"LAB_PORT": "0", "LAB_DIR": str(tmp_path), "PYTHONUNBUFFERED": "1"})
    process = subprocess.Popen(
        [sys.executable, "-m", "examples.lab"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert process.stdout is not None
    lines = []
    for line in process.stdout:
        lines.append(line)
        if "Ctrl-C stops the lab." in line:
            break
    else:
        process.wait(timeout=30)
        pytest.fail("the lab did not come up:\n" + "".join(lines))
    assert (tmp_path / "env").exists()
    assert (tmp_path / "lab.json").exists()
    process.send_signal(sig)
    rest, _ = process.communicate(timeout=60)
    assert process.returncode == 0, rest
    assert "stopped." in rest
    assert not (tmp_path / "lab.json").exists()
    output = "".join(lines)
    assert "ready" in output
    assert "eyJ" not in output + rest  # no token (a JWT starts with eyJ) ever printed


def test_tokenguard_check_answers_for_the_lab_issuer(
    running_lab: Lab, capsys: pytest.CaptureFixture[str]
) -> None:
    # The first-run check a newcomer makes, against the lab the docs point them at.
    from tokenguard._cli import main as tokenguard_main

    env = read_env(running_lab.state_dir / "env")
    issuer, discovery = env["LAB_ISSUER"], env["LAB_DISCOVERY_URL"]
    assert (
        tokenguard_main(
            ["check", "--issuer", issuer, "--audience", API, "--discovery-url", discovery]
        )
        == 0
    )
    found = capsys.readouterr().out
    assert found.splitlines()[-1].startswith("OK: ")
    assert "(from the discovery document)" in found
    typo = issuer.replace("sts.windows.net", "sts.windows.nett")
    assert (
        tokenguard_main(
            ["check", "--issuer", typo, "--audience", API, "--discovery-url", discovery]
        )
        == 3
    )
    assert f"but the Issuer expects '{typo}'" in capsys.readouterr().out
