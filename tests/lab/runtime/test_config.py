"""The lab's TOML configuration: the default file, and clear errors for bad files."""

from __future__ import annotations

import copy
import tomllib
from pathlib import Path
from typing import Any

import pytest
from examples.lab.identity import LabConfig
from examples.lab.runtime import DEFAULT_CONFIG, ConfigError, load_config, parse_config

pytestmark = pytest.mark.lab


@pytest.fixture(scope="module")
def raw() -> dict[str, Any]:
    with DEFAULT_CONFIG.open("rb") as file:
        return tomllib.load(file)


def test_default_config_declares_the_vm_and_its_identities(lab_config: LabConfig) -> None:
    assert lab_config.tenant_id == "72f988bf-0000-4000-8000-00000000ab1e"
    assert [i.name for i in lab_config.all_identities] == [
        "tokenguard-vm",
        "reader-id",
        "norole-id",
    ]
    vm = lab_config.vm.identity
    assert vm.system_assigned
    assert vm.resource_id == (
        "/subscriptions/0b1f6471-1bf0-4dda-aec3-111122223333/resourcegroups/tokenguard-rg"
        "/providers/Microsoft.Compute/virtualMachines/tokenguard-vm"
    )
    reader = lab_config.identity("reader-id")
    assert not reader.system_assigned
    assert reader.resource_id.endswith(
        "/resourcegroups/tokenguard-rg/providers/Microsoft.ManagedIdentity"
        "/userAssignedIdentities/reader-id"
    )
    assert lab_config.storage_account == "labstorage"
    assert lab_config.issuer.token_lifetime == 86_400


def test_default_role_assignments(lab_config: LabConfig) -> None:
    rbac = lab_config.rbac()
    vm, reader, norole = lab_config.all_identities
    assert rbac.roles_at(vm.object_id, "/keyvault") == {"Key Vault Secrets Officer"}
    assert rbac.roles_at(vm.object_id, "/storage/containers/x") == {"Storage Blob Data Contributor"}
    assert rbac.roles_at(reader.object_id, "/keyvault") == {"Key Vault Secrets User"}
    assert rbac.roles_at(reader.object_id, "/storage") == {"Storage Blob Data Reader"}
    assert rbac.roles_at(norole.object_id, "/keyvault") == frozenset()
    assert rbac.roles_at(norole.object_id, "/storage") == frozenset()


def test_default_app_registration_and_app_role_assignments(lab_config: LabConfig) -> None:
    api, swagger = lab_config.app_registrations
    assert (api.name, api.identifier_uri, api.token_version) == (
        "tokenguard-lab-api",
        "api://tokenguard-lab-api",
        1,
    )
    assert api.app_roles == ("Secrets.Read", "Secrets.Write")
    assert api.scopes == ("Secrets.Read",)
    # Swagger UI's public client: no roles, no scopes, a loopback redirect URI
    assert (swagger.name, swagger.app_roles, swagger.scopes) == ("tokenguard-lab-swagger", (), ())
    assert swagger.accepts_redirect("http://127.0.0.1:5555/docs/oauth2-redirect")
    assert not swagger.accepts_redirect("http://127.0.0.1:5555/docs/oauth2-redirect/x")
    assert not swagger.accepts_redirect("http://127.0.0.1:99999/docs/oauth2-redirect")
    apps = lab_config.app_directory()
    vm, reader, norole = lab_config.all_identities
    assert apps.roles_of(vm.object_id, api) == ["Secrets.Read", "Secrets.Write"]
    assert apps.roles_of(reader.object_id, api) == ["Secrets.Read"]
    assert apps.roles_of(norole.object_id, api) == []
    assert apps.for_resource("api://tokenguard-lab-api/") == api
    assert apps.for_resource(api.app_id.upper()) == api
    assert apps.for_resource("https://vault.azure.net") is None


def test_container_scoped_assignment_stays_in_its_container(raw: dict[str, Any]) -> None:
    data = copy.deepcopy(raw)
    data["role_assignments"].append(
        {
            "principal": "norole-id",
            "role": "Storage Blob Data Reader",
            "scope": "/storage/containers/logs",
        }
    )
    config = parse_config(data)
    norole = config.identity("norole-id")
    rbac = config.rbac()
    assert rbac.roles_at(norole.object_id, "/storage") == frozenset()
    assert rbac.roles_at(norole.object_id, "/storage/containers/other") == frozenset()
    assert rbac.roles_at(norole.object_id, "/storage/containers/logs") == {
        "Storage Blob Data Reader"
    }


def test_a_v2_registration(raw: dict[str, Any]) -> None:
    data = copy.deepcopy(raw)
    data["app_registrations"].append(
        {"name": "v2-api", "app_id": "0000aaaa-1111-4222-8333-444455556666", "token_version": 2}
    )
    config = parse_config(data)
    v2 = config.app_directory().app("v2-api")
    assert (v2.identifier_uri, v2.token_version, v2.app_roles) == (
        "api://0000aaaa-1111-4222-8333-444455556666",
        2,
        (),
    )


def test_user_assigned_lookup_is_case_insensitive(lab_config: LabConfig) -> None:
    reader = lab_config.identity("reader-id")
    assert lab_config.user_assigned(client_id=reader.client_id.upper()) == reader
    assert lab_config.user_assigned(object_id=reader.object_id.upper()) == reader
    assert lab_config.user_assigned(resource_id=reader.resource_id.upper()) == reader
    assert lab_config.user_assigned(client_id=lab_config.vm.identity.client_id) is None


def test_principal_may_be_a_raw_object_id(raw: dict[str, Any]) -> None:
    data = copy.deepcopy(raw)
    outsider = "0000aaaa-1111-4222-8333-444455556666"
    data["role_assignments"] = [
        {"principal": outsider.upper(), "role": "Key Vault Secrets User", "scope": "/keyvault"}
    ]
    config = parse_config(data)
    assert config.rbac().roles_at(outsider, "/keyvault") == {"Key Vault Secrets User"}


def _broken(raw: dict[str, Any], change: str) -> dict[str, Any]:
    data = copy.deepcopy(raw)
    first = data["role_assignments"][0]
    if change == "unknown principal":
        first["principal"] = "nobody"
    elif change == "unknown role":
        first["role"] = "Key Vault Wizard"
    elif change == "bad scope":
        first["scope"] = "/keyvault/secrets"
    elif change == "role outside its tree":
        first["scope"] = "/storage"
    elif change == "bad guid":
        data["identities"][0]["client_id"] = "not-a-guid"
    elif change == "duplicate name":
        data["identities"][1]["name"] = "reader-id"
    elif change == "duplicate client id":
        data["identities"][1]["client_id"] = data["identities"][0]["client_id"]
    elif change == "unknown key":
        data["vm"]["identitty"] = {}
    elif change == "short lifetime":
        data["issuer"]["token_lifetime"] = 60
    elif change == "lifetime not an integer":
        data["issuer"]["token_lifetime"] = "1 day"
    elif change == "missing tenant":
        del data["tenant_id"]
    elif change == "bad account":
        data["storage"]["account"] = "Lab_Storage"
    elif change == "unknown app":
        data["app_role_assignments"][0]["app"] = "other-api"
    elif change == "unknown app role":
        data["app_role_assignments"][0]["role"] = "Secrets.Admin"
    elif change == "app role principal":
        data["app_role_assignments"][0]["principal"] = "nobody"
    elif change == "app roles not strings":
        data["app_registrations"][0]["app_roles"] = "Secrets.Read"
    elif change == "app role with a space":
        data["app_registrations"][0]["app_roles"] = ["Secrets Read"]
    elif change == "token version 3":
        data["app_registrations"][0]["token_version"] = 3
    elif change == "API claims the vault":
        data["app_registrations"][0]["identifier_uri"] = "https://vault.azure.net/"
    elif change == "two APIs, one URI":
        data["app_registrations"].append(
            {
                "name": "copy",
                "app_id": "0000aaaa-1111-4222-8333-444455556666",
                "identifier_uri": "api://tokenguard-lab-api",
            }
        )
    return data


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ("unknown principal", "role_assignments[0].principal: 'nobody' is neither an identity"),
        ("unknown role", "role_assignments[0].role: unknown role 'Key Vault Wizard'"),
        ("bad scope", "role_assignments[0].scope: '/keyvault/secrets'"),
        ("role outside its tree", "applies under /keyvault, not at '/storage'"),
        ("bad guid", "identities[0].client_id: 'not-a-guid' is not a GUID"),
        ("duplicate name", "name 'reader-id' is used twice"),
        ("duplicate client id", "client_id 'b2c3d4e5-f6a7-4b8c-9d0e-1f2a3b4c5d6e' is used twice"),
        ("unknown key", "vm.: unknown key(s) identitty"),
        ("short lifetime", "issuer.token_lifetime: must be at least 900"),
        ("lifetime not an integer", "issuer.token_lifetime: must be an integer"),
        ("missing tenant", "tenant_id: is required"),
        ("bad account", "storage.account: 'Lab_Storage' is not valid here"),
        ("unknown app", "no app registration 'other-api'"),
        ("unknown app role", "'tokenguard-lab-api' has no app role 'Secrets.Admin'"),
        ("app role principal", "app_role_assignments[0].principal: 'nobody' is neither"),
        ("app roles not strings", "app_registrations[0].app_roles: must be an array of strings"),
        ("app role with a space", "app_registrations[0]: app role 'Secrets Read' is not valid"),
        ("token version 3", "app_registrations[0].token_version: must be 1 or 2"),
        ("API claims the vault", "is an Azure service's"),
        ("two APIs, one URI", "identifier_uri 'api://tokenguard-lab-api' is"),
    ],
)
def test_bad_config_names_the_entry_and_the_problem(
    raw: dict[str, Any], change: str, message: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(_broken(raw, change), source="lab.toml")
    assert str(caught.value).startswith("lab.toml: ")
    assert message in str(caught.value)


def test_load_config_reports_missing_and_invalid_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such file"):
        load_config(tmp_path / "absent.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("tenant_id = \n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(bad)


def test_load_config_reads_a_file(tmp_path: Path) -> None:
    path = tmp_path / "lab.toml"
    path.write_text(DEFAULT_CONFIG.read_text().replace("tokenguard-vm", "other-vm"))
    config = load_config(path)
    assert config.vm.name == "other-vm"
    assert config.source == str(path)
    # The replace renamed the VM in its role assignments too: they still resolve.
    assert config.rbac().roles_at(config.vm.identity.object_id, "/keyvault") == {
        "Key Vault Secrets Officer"
    }


def test_users(lab_config: LabConfig, raw: dict[str, Any]) -> None:
    names = [user.name for user in lab_config.users]
    assert names == ["Ada Lovelace", "Alan Turing", "Grace Hopper"]
    ada = lab_config.users[0]
    assert lab_config.user("ADA@tokenguard-lab.example") == ada
    assert lab_config.user(ada.object_id) == ada
    assert lab_config.user("nobody@example.com") is None
    twice = {**raw, "users": [raw["users"][0], raw["users"][0]]}
    with pytest.raises(ConfigError, match="preferred_username is used twice"):
        parse_config(twice)
    bad = {**raw, "users": [{**raw["users"][0], "preferred_username": "no at sign"}]}
    with pytest.raises(ConfigError, match=r"users\[0\]\.preferred_username"):
        parse_config(bad)


@pytest.mark.parametrize(
    "uri",
    ["http://example.com/cb", "https://example.com/cb#frag", "ftp://127.0.0.1/cb", "/relative"],
)
def test_redirect_uris_must_be_https_or_loopback(raw: dict[str, Any], uri: str) -> None:
    apps = [dict(a) for a in raw["app_registrations"]]
    apps[1]["redirect_uris"] = [uri]
    with pytest.raises(ConfigError, match="redirect URI"):
        parse_config({**raw, "app_registrations": apps})
