"""The real azure-identity credentials get tokens from the lab, and tokenguard accepts them.

The lab runs on free loopback ports; only the environment variables azure-identity reads
(``AZURE_POD_IDENTITY_AUTHORITY_HOST``, or ``IDENTITY_ENDPOINT``/``IDENTITY_HEADER``) point
the credentials at it.
"""

from __future__ import annotations

import time

import httpx
import pytest
from azure.core.exceptions import ClientAuthenticationError
from azure.identity import ManagedIdentityCredential
from azure.identity.aio import ManagedIdentityCredential as AsyncManagedIdentityCredential
from examples.lab.identity import ManagedIdentity
from examples.lab.runtime import Lab

from tokenguard import Identity, Issuer, TokenValidator

pytestmark = [pytest.mark.lab, pytest.mark.anyio]

VAULT_SCOPE = "https://vault.azure.net/.default"
STORAGE_SCOPE = "https://storage.azure.com/.default"
API = "api://tokenguard-lab-api"
NO_ROLES: set[str] = set()


async def validate(lab: Lab, token: str, audience: str = "https://vault.azure.net") -> Identity:
    """Validate as a resource would: keys from the lab's discovery document over loopback.

    Key Vault and Storage tokens carry no roles: their services authorize by object id.
    """
    issuer = Issuer(
        issuer=lab.issuer.issuer,
        audiences=(audience,),
        discovery_url=lab.urls.discovery_url,
        require_roles_or_scopes=False,
    )
    async with TokenValidator([issuer]) as validator:
        return await validator.validate(token)


def assert_identity(identity: Identity, expected: ManagedIdentity, roles: set[str]) -> None:
    assert identity.kind == "managed_identity"
    assert identity.object_id == expected.object_id
    assert identity.app_id == expected.client_id
    assert identity.mi_resource_id == expected.resource_id
    assert identity.roles == roles


@pytest.fixture
def imds_env(running_lab: Lab, clean_env: pytest.MonkeyPatch) -> Lab:
    clean_env.setenv("AZURE_POD_IDENTITY_AUTHORITY_HOST", running_lab.urls.imds)
    return running_lab


@pytest.fixture
def app_service_env(running_lab: Lab, clean_env: pytest.MonkeyPatch) -> Lab:
    clean_env.setenv("IDENTITY_ENDPOINT", running_lab.urls.identity_endpoint)
    clean_env.setenv("IDENTITY_HEADER", running_lab.identity_header)
    return running_lab


async def test_sync_credential_through_imds(imds_env: Lab) -> None:
    before = time.time()
    with ManagedIdentityCredential() as credential:
        token = credential.get_token(VAULT_SCOPE)
        again = credential.get_token(VAULT_SCOPE)
    assert again.token == token.token  # served from the credential's cache
    assert before + 86_400 - 60 <= token.expires_on <= time.time() + 86_400 + 1
    identity = await validate(imds_env, token.token)
    assert_identity(identity, imds_env.config.vm.identity, NO_ROLES)


async def test_async_credential_through_imds(imds_env: Lab) -> None:
    async with AsyncManagedIdentityCredential() as credential:
        token = await credential.get_token(VAULT_SCOPE)
    identity = await validate(imds_env, token.token)
    assert_identity(identity, imds_env.config.vm.identity, NO_ROLES)


async def test_user_assigned_identity_by_client_id(imds_env: Lab) -> None:
    reader = imds_env.config.identity("reader-id")
    with ManagedIdentityCredential(client_id=reader.client_id) as credential:
        token = credential.get_token(VAULT_SCOPE)
    assert_identity(await validate(imds_env, token.token), reader, NO_ROLES)
    async with AsyncManagedIdentityCredential(client_id=reader.client_id) as async_credential:
        storage = await async_credential.get_token(STORAGE_SCOPE)
    identity = await validate(imds_env, storage.token, "https://storage.azure.com")
    assert_identity(identity, reader, NO_ROLES)


@pytest.mark.parametrize("selector", ["object_id", "resource_id"])
async def test_user_assigned_identity_by_other_selectors(imds_env: Lab, selector: str) -> None:
    reader = imds_env.config.identity("reader-id")
    config = {selector: getattr(reader, selector)}
    with ManagedIdentityCredential(identity_config=config) as credential:
        token = credential.get_token(VAULT_SCOPE)
    assert_identity(await validate(imds_env, token.token), reader, NO_ROLES)


async def test_api_tokens_carry_the_assigned_app_roles(imds_env: Lab) -> None:
    reader = imds_env.config.identity("reader-id")
    with (
        ManagedIdentityCredential() as vm,
        ManagedIdentityCredential(client_id=reader.client_id) as as_reader,
    ):
        vm_token = vm.get_token(API + "/.default")
        reader_token = as_reader.get_token(API + "/.default")
    vm_identity = await validate(imds_env, vm_token.token, API)
    assert_identity(vm_identity, imds_env.config.vm.identity, {"Secrets.Read", "Secrets.Write"})
    assert_identity(await validate(imds_env, reader_token.token, API), reader, {"Secrets.Read"})


async def test_async_credential_with_a_resource_id_selector(imds_env: Lab) -> None:
    """The async credential sends identity_config as it is: IMDS's msi_res_id works,
    a key IMDS does not read is refused instead of silently meaning the VM's identity."""
    reader = imds_env.config.identity("reader-id")
    config = {"msi_res_id": reader.resource_id}
    async with AsyncManagedIdentityCredential(identity_config=config) as credential:
        token = await credential.get_token(VAULT_SCOPE)
    assert_identity(await validate(imds_env, token.token), reader, NO_ROLES)
    wrong = {"resource_id": reader.resource_id}
    async with AsyncManagedIdentityCredential(identity_config=wrong) as credential:
        with pytest.raises(ClientAuthenticationError, match="does not read resource_id"):
            await credential.get_token(STORAGE_SCOPE)


async def test_sync_credential_through_app_service(app_service_env: Lab) -> None:
    with ManagedIdentityCredential() as credential:
        token = credential.get_token(VAULT_SCOPE)
    identity = await validate(app_service_env, token.token)
    assert_identity(identity, app_service_env.config.vm.identity, NO_ROLES)


async def test_async_credential_through_app_service(app_service_env: Lab) -> None:
    reader = app_service_env.config.identity("reader-id")
    async with AsyncManagedIdentityCredential(client_id=reader.client_id) as credential:
        token = await credential.get_token(VAULT_SCOPE)
    assert_identity(await validate(app_service_env, token.token), reader, NO_ROLES)


async def test_app_service_refuses_a_wrong_identity_header_sync(
    app_service_env: Lab, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("IDENTITY_HEADER", "not-the-secret")
    minted = app_service_env.tokens.minted
    with (
        ManagedIdentityCredential() as credential,
        pytest.raises(ClientAuthenticationError, match="not valid"),
    ):
        credential.get_token(VAULT_SCOPE)
    assert app_service_env.tokens.minted == minted


async def test_app_service_refuses_a_wrong_identity_header_async(
    app_service_env: Lab, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("IDENTITY_HEADER", "not-the-secret")
    minted = app_service_env.tokens.minted
    async with AsyncManagedIdentityCredential() as credential:
        with pytest.raises(ClientAuthenticationError, match="not valid"):
            await credential.get_token(VAULT_SCOPE)
    assert app_service_env.tokens.minted == minted


async def test_a_scope_sent_as_a_resource_is_refused(imds_env: Lab) -> None:
    """IMDS wants a resource; azure-identity strips "/.default", a raw client must too."""
    async with httpx.AsyncClient(trust_env=False) as http:
        answer = await http.get(
            imds_env.urls.imds + "/metadata/identity/oauth2/token",
            params={"api-version": "2018-02-01", "resource": VAULT_SCOPE},
            headers={"Metadata": "true"},
        )
    assert answer.status_code == 400
    assert answer.json()["error"] == "invalid_resource"
