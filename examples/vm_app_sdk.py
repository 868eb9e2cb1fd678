"""``make demo-sdk``: the walk-through of ``examples/vm_app.py`` with the official Azure SDKs.

``ManagedIdentityCredential`` finds the lab's IMDS through
``AZURE_POD_IDENTITY_AUTHORITY_HOST``; ``SecretClient`` and ``BlobServiceClient`` reach
the toy resources over https with the lab CA (``connection_verify``), and Key Vault's
challenge names a 127.0.0.1 authority, hence ``verify_challenge_resource=False``.
The SDKs are synchronous, so the lab runs in a background thread. The same credential
gets a token for the example API (``api://tokenguard-lab-api/.default``), which carries
the VM's app roles, while its Key Vault and Storage tokens carry none (RBAC by ``oid``).

    python -m examples.vm_app_sdk    (or: make demo-sdk)
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a file: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx
from azure.core import PipelineClient
from azure.core.credentials import AccessToken
from azure.core.exceptions import HttpResponseError, ResourceExistsError
from azure.core.rest import HttpRequest, HttpResponse
from azure.identity import ManagedIdentityCredential
from azure.keyvault.secrets import SecretClient
from azure.storage.blob import BlobServiceClient

from examples.fastapi_service import API_AUDIENCE, Settings, create_app
from examples.lab.demo import MODEL, VAULT, Report, bearer, describe_token, lab_location, roles_in
from examples.lab.resource import CALLER_HEADER
from examples.lab.runtime import ConfigError, Lab, LabError, LabThread

#: Variables that would make azure-identity pick another flow than IMDS.
OTHER_FLOWS = (
    "IDENTITY_ENDPOINT",
    "IDENTITY_HEADER",
    "IDENTITY_SERVER_THUMBPRINT",
    "IMDS_ENDPOINT",
    "MSI_ENDPOINT",
    "MSI_SECRET",
    "AZURE_FEDERATED_TOKEN_FILE",
)


class StaticToken:
    """A credential handing out one given token (to show what the resources refuse)."""

    def __init__(self, token: str, expires_on: int) -> None:
        self.token = token
        self.expires_on = expires_on

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        """The token, whatever the scope."""
        return AccessToken(self.token, self.expires_on)


def status_of(call: Callable[[], object]) -> str:
    """``"ok"`` when ``call`` succeeds, else the HTTP status of the SDK's error."""
    try:
        call()
    except HttpResponseError as exc:
        return str(exc.status_code)
    return "ok"


def caller_hook(seen: list[str]) -> Callable[[Any], None]:
    """A ``raw_response_hook`` that records the caller header the resource sent back."""

    def hook(response: Any) -> None:
        seen.append(response.http_response.headers.get(CALLER_HEADER, "(no caller header)"))

    return hook


def step_token(lab: Lab, report: Report, credential: ManagedIdentityCredential) -> None:
    report.section("1. ManagedIdentityCredential gets a token from the lab's IMDS")
    report.say(f"AZURE_POD_IDENTITY_AUTHORITY_HOST={lab.urls.imds}")
    token = credential.get_token(VAULT + "/.default")
    report.check("get_token(https://vault.azure.net/.default)", "a token", "a token")
    report.say(*describe_token(token.token), *MODEL)
    report.check("roles in the Key Vault token", "none", roles_in(token.token))


def step_keyvault(lab: Lab, report: Report, credential: ManagedIdentityCredential) -> None:
    assert lab.urls.keyvault is not None
    ca = str(lab.ca_cert)
    report.section(f"2a. SecretClient against the toy Key Vault ({lab.urls.keyvault})")
    client = SecretClient(
        lab.urls.keyvault, credential, connection_verify=ca, verify_challenge_resource=False
    )
    with client:
        seen: list[str] = []
        client.set_secret("demo-secret", "s3cr3t", raw_response_hook=caller_hook(seen))
        report.check("set_secret (RBAC: the VM's oid is Secrets Officer)", "ok", "ok")
        report.say(f"the vault saw: {seen[-1]}")
        value = client.get_secret("demo-secret").value
        report.check(
            "get_secret back", "same value", "same value" if value == "s3cr3t" else "other"
        )


def step_storage(lab: Lab, report: Report, credential: ManagedIdentityCredential) -> None:
    assert lab.urls.storage is not None
    report.section(f"2b. BlobServiceClient against the toy Storage ({lab.urls.storage})")
    service = BlobServiceClient(lab.urls.storage, credential, connection_verify=str(lab.ca_cert))
    with service:
        container = service.get_container_client("demo")
        with contextlib.suppress(ResourceExistsError):  # a second run finds it there
            container.create_container()
        report.check("create_container", "exists", "exists" if container.exists() else "missing")
        seen: list[str] = []
        data = b"hello from the VM\n"
        container.upload_blob(
            "hello.txt", data, overwrite=True, raw_response_hook=caller_hook(seen)
        )
        report.check("upload_blob (RBAC: the VM's oid is Contributor)", "ok", "ok")
        report.say(f"the storage saw: {seen[-1]}")
        back = container.download_blob("hello.txt").readall()
        report.check("download_blob", "same bytes", "same bytes" if back == data else "other bytes")


def step_api(runner: LabThread, report: Report, credential: ManagedIdentityCredential) -> None:
    lab = runner.lab
    api = runner.serve_app("api", create_app(Settings.from_env(lab.env())))
    report.section(f"2c. Your own API with app roles ({api}, audience {API_AUDIENCE})")
    token = credential.get_token(API_AUDIENCE + "/.default").token
    report.say("its app-role assignments, in the token (the API checks them):")
    report.check("roles in the API token", "Secrets.Read Secrets.Write", roles_in(token))
    reader_id = lab.config.identity("reader-id").client_id
    with (
        ManagedIdentityCredential(client_id=reader_id) as reader,
        httpx.Client(base_url=api, trust_env=False) as http,
    ):
        put = http.put("/secrets/demo", json={"value": "v"}, headers=bearer(token))
        report.check("PUT /secrets/demo (Secrets.Write)", "200", str(put.status_code))
        reader_token = reader.get_token(API_AUDIENCE + "/.default").token
        report.check("roles in reader-id's API token", "Secrets.Read", roles_in(reader_token))
        got = http.get("/secrets/demo", headers=bearer(reader_token))
        report.check("reader-id GET /secrets/demo (Secrets.Read)", "200", str(got.status_code))
        denied = http.put("/secrets/demo", json={"value": "x"}, headers=bearer(reader_token))
        report.check("reader-id PUT /secrets/demo", "403", str(denied.status_code))


def step_refusals(lab: Lab, report: Report) -> None:
    assert lab.urls.keyvault is not None
    vault, ca = lab.urls.keyvault, str(lab.ca_cert)
    report.section("3. Refusals")

    def get_with(credential: Any) -> str:
        client = SecretClient(
            vault, credential, connection_verify=ca, verify_challenge_resource=False
        )
        with client:
            return status_of(lambda: client.get_secret("demo-secret"))

    norole = lab.config.identity("norole-id")
    with ManagedIdentityCredential(client_id=norole.client_id) as credential:
        report.check("norole-id get_secret (no role assignment)", "403", get_with(credential))
    vm = lab.config.vm.identity
    forged = lab.issuer.forge(vm, VAULT)
    report.check(
        "forged token get_secret", "401", get_with(StaticToken(forged, int(time.time()) + 3600))
    )
    expired = lab.issuer.mint(vm, VAULT, issued_at=time.time() - 2 * 86_400, lifetime=3_600)
    report.check(
        "expired token get_secret", "401", get_with(StaticToken(expired.token, expired.expires_on))
    )
    # azure-core's pipeline without an authentication policy sends no token at all.
    raw: PipelineClient[HttpRequest, HttpResponse] = PipelineClient(vault, connection_verify=ca)
    with raw:
        answer = raw.send_request(
            HttpRequest("GET", f"{vault}/secrets/demo-secret/?api-version=7.5")
        )
    challenge = answer.headers.get("WWW-Authenticate", "")
    report.say(f"WWW-Authenticate: {challenge}")
    shown = f"{answer.status_code}{' + challenge' if 'authorization=' in challenge else ''}"
    report.check("no token (azure-core pipeline)", "401 + challenge", shown)


def run(runner: LabThread, report: Report) -> None:
    """The three steps against a running lab."""
    lab = runner.lab
    for name in OTHER_FLOWS:
        os.environ.pop(name, None)
    os.environ["AZURE_POD_IDENTITY_AUTHORITY_HOST"] = lab.urls.imds
    with ManagedIdentityCredential() as credential:
        step_token(lab, report, credential)
        if lab.urls.keyvault is None or lab.urls.storage is None:
            report.check("toy Key Vault and Storage running", "running", "not started")
            return
        step_keyvault(lab, report, credential)
        step_storage(lab, report, credential)
        step_api(runner, report, credential)
    step_refusals(lab, report)


def walk(report: Report) -> None:
    """Start the lab in a thread, run the three steps against it, stop it."""
    with lab_location() as (state_dir, port, config):
        runner = LabThread(
            Lab(state_dir, config=config, base_port=port, log=partial(print, flush=True))
        )
        lab = runner.start()
        try:
            print(lab.readiness_table())
            run(runner, report)
        except HttpResponseError as exc:
            report.check(
                "an SDK call", "success", f"{type(exc).__name__} {exc.status_code}", ok=False
            )
        finally:
            runner.stop()


def main() -> int:
    """Run the walk-through; 0 when every step answered as expected."""
    report = Report()
    print("tokenguard identity lab, with the Azure SDKs for identity, secrets and blobs")
    try:
        walk(report)
    except (LabError, ConfigError) as exc:
        print(f"the lab did not start: {exc}", file=sys.stderr)
        return 1
    return report.finish()


if __name__ == "__main__":
    sys.exit(main())
