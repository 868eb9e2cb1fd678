"""The whole flow with the official SDKs: IMDS -> token -> toy Key Vault and Storage.

The services themselves are tested in ``tests/lab/keyvault`` and ``tests/lab/blob``; here
the tokens come from the lab's IMDS through ``ManagedIdentityCredential``, and the
refusals come back through the SDKs as their callers would see them.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Iterator
from typing import Any

import jwt
import pytest
from azure.core.exceptions import ClientAuthenticationError, HttpResponseError, ResourceExistsError
from azure.identity import ManagedIdentityCredential
from azure.keyvault.secrets import SecretClient
from azure.storage.blob import BlobServiceClient
from examples.lab.runtime import Lab
from examples.vm_app_sdk import StaticToken

from .conftest import SCOPED_CONTAINER

pytestmark = pytest.mark.lab

VAULT = "https://vault.azure.net"
STORAGE = "https://storage.azure.com/"
IDENTITIES = {"vm": "tokenguard-vm", "reader": "reader-id", "norole": "norole-id"}


@pytest.fixture
def lab(running_lab: Lab, clean_env: pytest.MonkeyPatch) -> Lab:
    assert running_lab.urls.keyvault is not None, "the lab runs the toy Key Vault"
    assert running_lab.urls.storage is not None, "the lab runs the toy Storage"
    clean_env.setenv("AZURE_POD_IDENTITY_AUTHORITY_HOST", running_lab.urls.imds)
    return running_lab


@pytest.fixture
def credentials(lab: Lab) -> Iterator[dict[str, ManagedIdentityCredential]]:
    """A credential per identity: the VM's own, reader-id and norole-id (by client_id)."""
    made = {
        "vm": ManagedIdentityCredential(),
        "reader": ManagedIdentityCredential(client_id=lab.config.identity("reader-id").client_id),
        "norole": ManagedIdentityCredential(client_id=lab.config.identity("norole-id").client_id),
    }
    yield made
    for credential in made.values():
        credential.close()


def secrets(lab: Lab, credential: Any) -> SecretClient:
    assert lab.urls.keyvault is not None
    return SecretClient(
        lab.urls.keyvault,
        credential,
        connection_verify=str(lab.ca_cert),
        verify_challenge_resource=False,
    )


def blobs(lab: Lab, credential: Any) -> BlobServiceClient:
    assert lab.urls.storage is not None
    return BlobServiceClient(lab.urls.storage, credential, connection_verify=str(lab.ca_cert))


def test_secret_client_through_the_lab(
    lab: Lab, credentials: dict[str, ManagedIdentityCredential]
) -> None:
    name = f"flow-{uuid.uuid4().hex[:8]}"
    with secrets(lab, credentials["vm"]) as officer:
        created = officer.set_secret(name, "v1")
        assert officer.get_secret(name).value == "v1"
    assert created.id is not None
    with secrets(lab, credentials["reader"]) as reader:
        assert reader.get_secret(name).value == "v1"
        with pytest.raises(HttpResponseError) as denied:
            reader.set_secret(name, "v2")
        assert denied.value.status_code == 403
    with secrets(lab, credentials["norole"]) as norole:
        with pytest.raises(HttpResponseError) as refused:
            norole.get_secret(name)
        assert refused.value.status_code == 403
    with secrets(lab, credentials["vm"]) as officer:
        assert officer.get_secret(name).value == "v1"  # the refused write changed nothing
        # soft delete and recover, through the same IMDS token
        officer.begin_delete_secret(name).wait()
        assert officer.get_deleted_secret(name).name == name
        officer.begin_recover_deleted_secret(name).wait()
        assert officer.get_secret(name).value == "v1"
        # paged listing: more secrets than one page holds
        for i in range(3):
            officer.set_secret(f"{name}-page-{i}", str(i))
        pages = list(officer.list_properties_of_secrets(max_page_size=2).by_page())
        listed = {p.name for page in pages for p in page}
        assert len(pages) >= 2
        assert {name, *(f"{name}-page-{i}" for i in range(3))} <= listed


@pytest.mark.parametrize("kind", ["forged", "expired"])
def test_secret_client_bad_tokens_get_401(lab: Lab, kind: str) -> None:
    vm = lab.config.vm.identity
    if kind == "forged":
        credential = StaticToken(lab.issuer.forge(vm, VAULT), int(time.time()) + 3600)
    else:
        issued = lab.issuer.mint(vm, VAULT, issued_at=time.time() - 7200, lifetime=3600)
        credential = StaticToken(issued.token, issued.expires_on)
    with secrets(lab, credential) as client, pytest.raises(ClientAuthenticationError) as caught:
        client.get_secret("anything")
    assert caught.value.status_code == 401


def test_blob_client_through_the_lab(
    lab: Lab, credentials: dict[str, ManagedIdentityCredential]
) -> None:
    container = f"flow-{uuid.uuid4().hex[:8]}"
    data = b"bytes from the VM\n" * 100
    with blobs(lab, credentials["vm"]) as contributor:
        contributor.create_container(container)
        box = contributor.get_container_client(container)
        box.upload_blob("a/b.txt", data)
        assert box.download_blob("a/b.txt").readall() == data
        assert box.download_blob("a/b.txt", offset=18, length=18).readall() == data[18:36]
        for i in range(3):
            box.upload_blob(f"p/{i}.txt", b"page")
        pages = list(box.list_blobs(name_starts_with="p/", results_per_page=2).by_page())
        assert [[b.name for b in page] for page in pages] == [["p/0.txt", "p/1.txt"], ["p/2.txt"]]
    with blobs(lab, credentials["reader"]) as reader:
        box = reader.get_container_client(container)
        assert box.download_blob("a/b.txt").readall() == data
        assert [b.name for b in box.list_blobs(name_starts_with="a/")] == ["a/b.txt"]
        with pytest.raises(HttpResponseError) as denied:
            box.upload_blob("c.txt", b"no")
        assert denied.value.status_code == 403
    with blobs(lab, credentials["norole"]) as norole:
        with pytest.raises(HttpResponseError) as refused:
            norole.get_container_client(container).download_blob("a/b.txt").readall()
        assert refused.value.status_code == 403


def test_resource_tokens_carry_no_roles_and_rbac_decides_by_oid(
    lab: Lab, credentials: dict[str, ManagedIdentityCredential]
) -> None:
    for who, credential in credentials.items():
        for scope in (VAULT + "/.default", STORAGE + ".default"):
            claims = jwt.decode(
                credential.get_token(scope).token, options={"verify_signature": False}
            )
            assert "roles" not in claims, (who, scope)
            assert claims["oid"] == lab.config.identity(IDENTITIES[who]).object_id
    name = f"rbac-{uuid.uuid4().hex[:8]}"
    with secrets(lab, credentials["vm"]) as officer:
        officer.set_secret(name, "by oid")  # Key Vault Secrets Officer at /keyvault
    with secrets(lab, credentials["reader"]) as user:
        assert user.get_secret(name).value == "by oid"  # Key Vault Secrets User
    with secrets(lab, credentials["norole"]) as nobody, pytest.raises(HttpResponseError) as denied:
        nobody.get_secret(name)
    assert denied.value.status_code == 403


def test_container_scoped_assignment_does_not_reach_other_containers(
    lab: Lab, credentials: dict[str, ManagedIdentityCredential]
) -> None:
    other = f"other-{uuid.uuid4().hex[:8]}"
    with blobs(lab, credentials["vm"]) as contributor:
        for container in (SCOPED_CONTAINER, other):
            with contextlib.suppress(ResourceExistsError):
                contributor.create_container(container)
    with blobs(lab, credentials["reader"]) as reader:
        # reader-id: Storage Blob Data Reader on the account, Contributor on SCOPED_CONTAINER
        scoped = reader.get_container_client(SCOPED_CONTAINER)
        scoped.upload_blob("mine.txt", b"ok", overwrite=True)
        assert scoped.download_blob("mine.txt").readall() == b"ok"
        with pytest.raises(HttpResponseError) as denied:
            reader.get_container_client(other).upload_blob("theirs.txt", b"no")
        assert denied.value.status_code == 403
        assert list(reader.get_container_client(other).list_blobs()) == []  # reading is allowed


def test_blob_client_forged_token_gets_401(lab: Lab) -> None:
    forged = lab.issuer.forge(lab.config.vm.identity, STORAGE)
    with (
        blobs(lab, StaticToken(forged, int(time.time()) + 3600)) as client,
        pytest.raises(HttpResponseError) as caught,
    ):
        client.get_container_client("anything").get_container_properties()
    assert caught.value.status_code == 401


def test_app_service_flavour_reaches_the_vault(lab: Lab, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AZURE_POD_IDENTITY_AUTHORITY_HOST")
    monkeypatch.setenv("IDENTITY_ENDPOINT", lab.urls.identity_endpoint)
    monkeypatch.setenv("IDENTITY_HEADER", lab.identity_header)
    name = f"appsvc-{uuid.uuid4().hex[:8]}"
    with ManagedIdentityCredential() as credential, secrets(lab, credential) as client:
        client.set_secret(name, "from app service")
        assert client.get_secret(name).value == "from app service"
