"""The VM app of ``make demo``: a managed identity's token from IMDS to the resources and back.

Starts the local identity lab (issuer, IMDS, toy Key Vault and Storage on 127.0.0.1)
and the example API (``examples/fastapi_service.py``), then walks the flow as an app on
an Azure VM would, with plain httpx:

1. ask IMDS for a token (``Metadata: true``) and show its decoded claims: no ``roles``;
2. write and read a secret in the toy Key Vault and a blob in the toy Storage with it
   (they authorize the token's ``oid`` by their RBAC role assignments), showing the
   identity each resource saw; then call the example API with a token for *it*, which
   carries the app roles assigned to the VM;
3. show the refusals: an identity without a role assignment (403), an app role missing
   for an API route (403), a forged token (401), an expired token (401), no token (401
   with Key Vault's challenge).

Prints a table, stops the lab, and exits 0 only if every step answered as expected.
``LAB_DIR`` / ``LAB_PORT`` choose the lab's state directory and base port.

    python -m examples.vm_app        (or: make demo)
"""

from __future__ import annotations

import asyncio
import sys
import time
from functools import partial
from pathlib import Path

if __package__ in (None, ""):  # run as a file: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx

from examples.fastapi_service import API_AUDIENCE, Settings, create_app
from examples.lab.demo import (
    MODEL,
    STORAGE,
    VAULT,
    Report,
    bearer,
    describe_token,
    lab_location,
    roles_in,
)
from examples.lab.identity import ManagedIdentity
from examples.lab.resource import CALLER_HEADER
from examples.lab.runtime import ConfigError, Lab, LabError

API_VERSION = "7.5"
STORAGE_VERSION = "2025-01-05"


async def imds_token(
    http: httpx.AsyncClient, lab: Lab, resource: str, identity: ManagedIdentity | None = None
) -> httpx.Response:
    """``GET /metadata/identity/oauth2/token`` as a VM app does."""
    params = {"api-version": "2018-02-01", "resource": resource}
    if identity is not None:
        params["client_id"] = identity.client_id
    return await http.get(
        lab.urls.imds + "/metadata/identity/oauth2/token",
        params=params,
        headers={"Metadata": "true"},
    )


def refusal(response: httpx.Response) -> str:
    """Status and the RFC 6750 error code from ``WWW-Authenticate`` (if any)."""
    challenge = response.headers.get("www-authenticate", "")
    for part in challenge.replace(",", " ").split():
        if part.startswith("error="):
            return f"{response.status_code} {part[len('error=') :].strip(chr(34))}"
    return str(response.status_code)


async def step_token(http: httpx.AsyncClient, lab: Lab, report: Report) -> str | None:
    report.section("1. The VM asks IMDS for a token (plain httpx, header Metadata: true)")
    report.say(
        f"GET {lab.urls.imds}/metadata/identity/oauth2/token"
        f"?api-version=2018-02-01&resource={VAULT}"
    )
    response = await imds_token(http, lab, VAULT)
    if not report.check("IMDS token for Key Vault", "200", str(response.status_code)):
        return None
    body = response.json()
    report.say(
        f"token_type={body['token_type']} expires_in={body['expires_in']} s "
        f"client_id={body['client_id']} resource={body['resource']}",
        *describe_token(body["access_token"]),
    )
    token: str = body["access_token"]
    report.say(*MODEL)
    report.check("roles in the Key Vault token", "none", roles_in(token))
    return token


async def step_keyvault(http: httpx.AsyncClient, lab: Lab, report: Report, token: str) -> None:
    vault = lab.urls.keyvault
    if vault is None:
        report.check("Key Vault is running", "running", "not started")
        return
    report.section(f"2a. Write and read a secret in the toy Key Vault ({vault})")
    secret = f"{vault}/secrets/demo-secret"
    put = await http.put(
        secret, params={"api-version": API_VERSION}, json={"value": "s3cr3t"}, headers=bearer(token)
    )
    report.check("set secret (RBAC: the VM's oid is Secrets Officer)", "200", str(put.status_code))
    report.say(f"the vault saw: {put.headers.get(CALLER_HEADER, '(no caller header)')}")
    got = await http.get(secret + "/", params={"api-version": API_VERSION}, headers=bearer(token))
    value = got.json().get("value") if got.status_code == 200 else None
    report.check(
        "get secret back",
        "200 same value",
        f"{got.status_code} {'same' if value == 's3cr3t' else 'other'} value",
    )


async def step_storage(http: httpx.AsyncClient, lab: Lab, report: Report) -> None:
    account = lab.urls.storage
    if account is None:
        report.check("Storage is running", "running", "not started")
        return
    report.section(f"2b. Upload and download a blob in the toy Storage ({account})")
    response = await imds_token(http, lab, STORAGE)
    if not report.check("IMDS token for Storage", "200", str(response.status_code)):
        return
    headers = {**bearer(response.json()["access_token"]), "x-ms-version": STORAGE_VERSION}
    created = await http.put(f"{account}/demo", params={"restype": "container"}, headers=headers)
    # A reused LAB_DIR already has the container: 409 is as good as 201 here.
    report.check(
        "create container",
        "201 or 409",
        str(created.status_code),
        created.status_code in (201, 409),
    )
    blob = f"{account}/demo/hello.txt"
    data = b"hello from the VM\n"
    put = await http.put(
        blob,
        content=data,
        headers={**headers, "x-ms-blob-type": "BlockBlob", "Content-Type": "text/plain"},
    )
    report.check("upload blob (RBAC: the VM's oid is Contributor)", "201", str(put.status_code))
    report.say(f"the storage saw: {put.headers.get(CALLER_HEADER, '(no caller header)')}")
    got = await http.get(blob, headers=headers)
    same = "same bytes" if got.content == data else "other bytes"
    report.check("download blob", "200 same bytes", f"{got.status_code} {same}")


async def step_api(http: httpx.AsyncClient, lab: Lab, report: Report) -> None:
    api = await lab.serve_app("api", create_app(Settings.from_env(lab.env())))
    report.section(f"2c. Your own API with app roles ({api}, audience {API_AUDIENCE})")
    response = await imds_token(http, lab, API_AUDIENCE)
    if not report.check("IMDS token for the API", "200", str(response.status_code)):
        return
    token = response.json()["access_token"]
    report.say("its app-role assignments, in the token (the API checks them):")
    report.check("roles in the API token", "Secrets.Read Secrets.Write", roles_in(token))
    put = await http.put(f"{api}/secrets/demo", json={"value": "v"}, headers=bearer(token))
    report.check("PUT /secrets/demo (Secrets.Write)", "200", str(put.status_code))
    whoami = await http.get(f"{api}/whoami", headers=bearer(token))
    if whoami.status_code == 200:
        seen = whoami.json()
        report.say(f"the API saw: {seen['display_name']}; roles={' '.join(seen['roles'])}")
    reader = lab.config.identity("reader-id")
    response = await imds_token(http, lab, API_AUDIENCE, reader)
    if not report.check("IMDS token for the API (reader-id)", "200", str(response.status_code)):
        return
    reader_token = response.json()["access_token"]
    report.check("roles in reader-id's API token", "Secrets.Read", roles_in(reader_token))
    got = await http.get(f"{api}/secrets/demo", headers=bearer(reader_token))
    report.check("reader-id GET /secrets/demo (Secrets.Read)", "200", str(got.status_code))
    denied = await http.put(
        f"{api}/secrets/demo", json={"value": "x"}, headers=bearer(reader_token)
    )
    report.check("reader-id PUT /secrets/demo", "403 insufficient_scope", refusal(denied))


async def step_refusals(http: httpx.AsyncClient, lab: Lab, report: Report) -> None:
    vault = lab.urls.keyvault
    if vault is None:
        return
    report.section("3. Refusals")
    secret = f"{vault}/secrets/demo-secret/"
    params = {"api-version": API_VERSION}
    norole = lab.config.identity("norole-id")
    response = await imds_token(http, lab, VAULT, norole)
    if report.check("IMDS token for norole-id (client_id)", "200", str(response.status_code)):
        denied = await http.get(
            secret, params=params, headers=bearer(response.json()["access_token"])
        )
        report.check(
            "norole-id reads the secret (no role assignment)",
            "403 insufficient_scope",
            refusal(denied),
        )
    vm = lab.config.vm.identity
    forged = lab.issuer.forge(vm, VAULT)
    report.say("forged: the lab's current kid, signed by a key nobody published")
    answer = await http.get(secret, params=params, headers=bearer(forged))
    report.check("forged token", "401 invalid_token", refusal(answer))
    two_days_ago = time.time() - 2 * 86_400
    expired = lab.issuer.mint(vm, VAULT, issued_at=two_days_ago, lifetime=3_600).token
    report.say("expired: signed by the real key, expired a day and 23 hours ago")
    answer = await http.get(secret, params=params, headers=bearer(expired))
    report.check("expired token", "401 invalid_token", refusal(answer))
    answer = await http.get(secret, params=params)
    challenge = answer.headers.get("www-authenticate", "")
    report.say(f"WWW-Authenticate: {challenge}")
    expected_challenge = f'authorization="{lab.urls.authority}"' in challenge
    report.check(
        "no token",
        "401 + challenge",
        f"{answer.status_code}{' + challenge' if expected_challenge else ' without challenge'}",
    )


async def walk(report: Report) -> None:
    """Start the lab, run the three steps against it, stop it."""
    with lab_location() as (state_dir, port, config):
        lab = Lab(state_dir, config=config, base_port=port, log=partial(print, flush=True))
        await lab.start()
        try:
            print(lab.readiness_table())
            async with httpx.AsyncClient(verify=lab.ssl_context(), trust_env=False) as http:
                token = await step_token(http, lab, report)
                if token is not None:
                    await step_keyvault(http, lab, report, token)
                    await step_storage(http, lab, report)
                    await step_api(http, lab, report)
                await step_refusals(http, lab, report)
        finally:
            await lab.stop()


async def main() -> int:
    """Run the walk-through; 0 when every step answered as expected."""
    report = Report()
    print("tokenguard identity lab: a VM app's managed identity, from IMDS to the resources")
    try:
        await walk(report)
    except (LabError, ConfigError) as exc:
        print(f"the lab did not start: {exc}", file=sys.stderr)
        return 1
    return report.finish()


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
