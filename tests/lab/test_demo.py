"""``make demo`` and ``make demo-sdk``: the scripts start their own lab and exit 0 when every
step answers as expected, and non-zero when one does not."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from examples.lab.runtime import DEFAULT_CONFIG

pytestmark = pytest.mark.lab

ROOT = Path(__file__).resolve().parents[2]


def run_demo(module: str, tmp_path: Path, **extra: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AZURE_", "IDENTITY_", "LAB_"))}
    env.update({"LAB_PORT": "0", "LAB_DIR": str(tmp_path / "lab"), **extra})
    return subprocess.run(
        [sys.executable, "-W", "error", "-m", module],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


@pytest.mark.parametrize("module", ["examples.vm_app", "examples.vm_app_sdk"])
def test_demo_walks_the_flow_and_exits_0(tmp_path: Path, module: str) -> None:
    result = run_demo(module, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "all steps answered as expected" in out
    assert "UNEXPECTED" not in out
    for step in ("norole-id", "forged token", "expired token", "no token"):
        assert step in out
    # The two kinds of permission: RBAC by oid for Azure resources, app roles for the API.
    assert "ok  roles in the Key Vault token: expected none, got none" in out
    assert "ok  roles in the API token: expected Secrets.Read Secrets.Write" in out
    assert "ok  reader-id PUT /secrets/demo: expected 403" in out
    assert "name=tokenguard-vm; kind=managed_identity" in out  # the identity the resource saw
    assert "eyJ" not in out + result.stderr  # a JWT starts with eyJ: no token is printed
    assert not (tmp_path / "lab" / "lab.json").exists()  # the lab was stopped
    assert result.stderr == ""  # no warnings, no server errors


def test_demo_exits_non_zero_when_a_step_does_not_answer_as_expected(tmp_path: Path) -> None:
    # Give norole-id a role: its 403 step now answers 200.
    config = tmp_path / "lab.toml"
    config.write_text(
        DEFAULT_CONFIG.read_text() + '\n[[role_assignments]]\nprincipal = "norole-id"\n'
        'role = "Key Vault Secrets User"\nscope = "/keyvault"\n'
    )
    result = run_demo("examples.vm_app", tmp_path, LAB_CONFIG=str(config))
    assert result.returncode == 1
    assert "norole-id reads the secret" in result.stdout
    assert "UNEXPECTED" in result.stdout
    assert "SOME STEPS DID NOT ANSWER AS EXPECTED" in result.stdout


def test_demo_reports_a_bad_config(tmp_path: Path) -> None:
    config = tmp_path / "lab.toml"
    config.write_text('tenant_id = "nope"\n')
    result = run_demo("examples.vm_app", tmp_path, LAB_CONFIG=str(config))
    assert result.returncode == 1
    assert "tenant_id: 'nope' is not a GUID" in result.stderr
