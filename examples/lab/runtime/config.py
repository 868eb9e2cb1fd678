"""The lab's configuration: tenant, VM, managed identities, app registrations with their
app-role assignments, and Azure RBAC role assignments, from TOML.

    config = load_config()                      # examples/lab/default.toml
    config = load_config(Path("my-lab.toml"))   # or LAB_CONFIG=my-lab.toml make lab

Everything is checked when the file is read; a mistake names the file, the entry and
the problem (:class:`ConfigError`). Principals in ``[[role_assignments]]`` and
``[[app_role_assignments]]`` are the name of an identity in the file (the VM's name for
its system-assigned identity) or a raw object id; scopes follow
:mod:`examples.lab.identity.rbac`, app registrations :mod:`examples.lab.identity.apps`.
"""

from __future__ import annotations

import dataclasses
import math
import re
import tomllib
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

from ..identity import (
    KNOWN_ROLES,
    AppRegistration,
    AppRoleAssignment,
    ImdsSettings,
    IssuerSettings,
    LabConfig,
    LabUser,
    ManagedIdentity,
    RoleAssignment,
    VirtualMachine,
)

__all__ = ["DEFAULT_CONFIG", "MIN_TOKEN_LIFETIME", "ConfigError", "load_config", "parse_config"]

#: ``examples/lab/default.toml``: the lab's tenant, VM, identities, APIs and assignments.
DEFAULT_CONFIG: Final = Path(__file__).resolve().parent.parent / "default.toml"

#: IMDS hands out a cached token until it has 10 minutes left; tokens must outlive that.
MIN_TOKEN_LIFETIME: Final = 900

_SCOPE: Final = re.compile(
    r"/|/keyvault|/storage|/storage/containers/[a-z0-9](?:[a-z0-9-]{1,61}[a-z0-9])"
)
_NAME: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")
_ACCOUNT: Final = re.compile(r"[a-z0-9]{3,24}")


class ConfigError(ValueError):
    """The lab configuration is invalid; the message says where and why."""


# -- parsing ----------------------------------------------------------------------


class _Table:
    """A TOML table read key by key; leftovers are reported as unknown keys."""

    def __init__(self, data: object, where: str, source: str) -> None:
        if not isinstance(data, dict):
            raise ConfigError(f"{source}: {where}: expected a table")
        self.data = dict(data)
        self.where = where
        self.source = source

    def error(self, key: str, problem: str) -> ConfigError:
        return ConfigError(f"{self.source}: {self.where}{key}: {problem}")

    def text(
        self, key: str, default: str | None = None, *, pattern: re.Pattern[str] | None = None
    ) -> str:
        value = self.data.pop(key, default)
        if value is None:
            raise self.error(key, "is required")
        if not isinstance(value, str) or not value:
            raise self.error(key, "must be a non-empty string")
        if pattern is not None and not pattern.fullmatch(value):
            raise self.error(key, f"{value!r} is not valid here")
        return value

    def guid(self, key: str) -> str:
        value = self.text(key)
        try:
            return str(uuid.UUID(value))
        except ValueError:
            raise self.error(key, f"{value!r} is not a GUID") from None

    def number(self, key: str, default: float, *, minimum: float) -> float:
        value = self.data.pop(key, default)
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
        ):
            raise self.error(key, "must be a number")
        if value < minimum:
            raise self.error(key, f"must be at least {minimum}")
        return float(value)

    def integer(self, key: str, default: int, *, minimum: int) -> int:
        value = self.data.pop(key, default)
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.error(key, "must be an integer")
        if value < minimum:
            raise self.error(key, f"must be at least {minimum}")
        return value

    def strings(self, key: str) -> list[str]:
        values = self.data.pop(key, [])
        if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
            raise self.error(key, "must be an array of strings")
        return values

    def table(self, key: str) -> _Table:
        return _Table(self.data.pop(key, {}), f"{self.where}{key}.", self.source)

    def array(self, key: str) -> list[_Table]:
        items = self.data.pop(key, [])
        if not isinstance(items, list):
            raise self.error(key, "must be an array of tables ([[...]])")
        return [_Table(item, f"{key}[{i}].", self.source) for i, item in enumerate(items)]

    def done(self) -> None:
        if self.data:
            unknown = ", ".join(sorted(self.data))
            raise ConfigError(
                f"{self.source}: {self.where or 'top level'}: unknown key(s) {unknown}"
            )


def _mi_resource_id(subscription: str, group: str, provider: str, name: str) -> str:
    return f"/subscriptions/{subscription}/resourcegroups/{group}/providers/{provider}/{name}"


def load_config(path: Path | None = None) -> LabConfig:
    """Read and check a lab configuration file (default: ``examples/lab/default.toml``)."""
    path = path or DEFAULT_CONFIG
    try:
        with path.open("rb") as file:
            data = tomllib.load(file)
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    return parse_config(data, source=str(path))


def parse_config(data: Mapping[str, Any], *, source: str = "<memory>") -> LabConfig:
    """Check already parsed TOML data and build the :class:`LabConfig`."""
    top = _Table(dict(data), "", source)
    tenant_id = top.guid("tenant_id")
    issuer = _issuer_settings(top.table("issuer"))
    imds_table = top.table("imds")
    imds = ImdsSettings(rate_limit=imds_table.number("rate_limit", 5.0, minimum=0.1))
    imds_table.done()
    storage = top.table("storage")
    account = storage.text("account", "labstorage", pattern=_ACCOUNT)
    storage.done()
    vm = _virtual_machine(top.table("vm"))
    identities = tuple(_user_assigned(t, vm) for t in top.array("identities"))
    _check_unique((vm.identity, *identities), source)
    partial = LabConfig(
        tenant_id=tenant_id,
        vm=vm,
        identities=identities,
        role_assignments=(),
        issuer=issuer,
        imds=imds,
        storage_account=account,
        source=source,
    )
    assignments = tuple(_assignment(t, partial) for t in top.array("role_assignments"))
    registrations = tuple(_registration(t) for t in top.array("app_registrations"))
    users = tuple(_user(t) for t in top.array("users"))
    for what in ("preferred_username", "object_id"):
        values = [getattr(user, what).lower() for user in users]
        if len(set(values)) != len(values):
            raise ConfigError(f"{source}: users: a {what} is used twice")
    app_roles = tuple(_app_role_assignment(t, partial) for t in top.array("app_role_assignments"))
    top.done()
    config = dataclasses.replace(
        partial,
        role_assignments=assignments,
        app_registrations=registrations,
        app_role_assignments=app_roles,
        users=users,
    )
    try:
        config.app_directory()  # clashing registrations, unknown apps or roles
    except ValueError as exc:
        raise ConfigError(f"{source}: app registrations: {exc}") from None
    return config


def _issuer_settings(table: _Table) -> IssuerSettings:
    settings = IssuerSettings(
        token_lifetime=table.integer("token_lifetime", 86_400, minimum=MIN_TOKEN_LIFETIME),
        jwks_max_age=table.integer("jwks_max_age", 3_600, minimum=0),
        rotation_overlap=table.number("rotation_overlap", 60.0, minimum=0),
        rotation_retire_after=table.number("rotation_retire_after", 60.0, minimum=0),
    )
    table.done()
    return settings


def _virtual_machine(table: _Table) -> VirtualMachine:
    name = table.text("name", pattern=_NAME)
    subscription = table.guid("subscription_id")
    group = table.text("resource_group", pattern=_NAME)
    identity_table = table.table("identity")
    identity = ManagedIdentity(
        name=name,
        object_id=identity_table.guid("object_id"),
        client_id=identity_table.guid("client_id"),
        resource_id=_mi_resource_id(subscription, group, "Microsoft.Compute/virtualMachines", name),
        system_assigned=True,
    )
    identity_table.done()
    vm = VirtualMachine(
        name=name,
        subscription_id=subscription,
        resource_group=group,
        location=table.text("location", "westeurope"),
        vm_id=table.guid("vm_id"),
        vm_size=table.text("vm_size", "Standard_B2s"),
        os_type=table.text("os_type", "Linux"),
        private_ip=table.text("private_ip", "10.0.0.4"),
        identity=identity,
    )
    table.done()
    return vm


def _user_assigned(table: _Table, vm: VirtualMachine) -> ManagedIdentity:
    name = table.text("name", pattern=_NAME)
    group = table.text("resource_group", vm.resource_group, pattern=_NAME)
    default_id = _mi_resource_id(
        vm.subscription_id, group, "Microsoft.ManagedIdentity/userAssignedIdentities", name
    )
    identity = ManagedIdentity(
        name=name,
        object_id=table.guid("object_id"),
        client_id=table.guid("client_id"),
        resource_id=table.text("resource_id", default_id),
        system_assigned=False,
    )
    table.done()
    return identity


def _check_unique(identities: tuple[ManagedIdentity, ...], source: str) -> None:
    for what in ("name", "object_id", "client_id", "resource_id"):
        seen: set[str] = set()
        for identity in identities:
            value = getattr(identity, what).lower()
            if value in seen:
                raise ConfigError(f"{source}: identities: {what} {value!r} is used twice")
            seen.add(value)


def _principal(table: _Table, config: LabConfig) -> str:
    principal = table.text("principal")
    object_id = config.principal(principal)
    if object_id is None:
        known = ", ".join(sorted(i.name for i in config.all_identities))
        raise table.error(
            "principal", f"{principal!r} is neither an identity ({known}) nor an object id"
        )
    return object_id


def _registration(table: _Table) -> AppRegistration:
    name = table.text("name", pattern=_NAME)
    app_id = table.guid("app_id")
    identifier_uri = table.text("identifier_uri", f"api://{app_id}")
    roles = tuple(table.strings("app_roles"))
    version = table.integer("token_version", 1, minimum=1)
    scopes = tuple(table.strings("scopes"))
    redirect_uris = tuple(table.strings("redirect_uris"))
    if version not in (1, 2):
        raise table.error("token_version", "must be 1 or 2 (accessTokenAcceptedVersion)")
    try:
        registration = AppRegistration(
            name=name,
            app_id=app_id,
            identifier_uri=identifier_uri,
            app_roles=roles,
            token_version=2 if version == 2 else 1,
            scopes=scopes,
            redirect_uris=redirect_uris,
        )
    except ValueError as exc:
        raise ConfigError(f"{table.source}: {table.where.rstrip('.')}: {exc}") from None
    table.done()
    return registration


_USERNAME: Final = re.compile(r"[A-Za-z0-9._%+-]{1,64}@[A-Za-z0-9.-]{1,190}")


def _user(table: _Table) -> LabUser:
    user = LabUser(
        name=table.text("name"),
        preferred_username=table.text("preferred_username", pattern=_USERNAME),
        object_id=table.guid("object_id"),
    )
    table.done()
    return user


def _app_role_assignment(table: _Table, config: LabConfig) -> AppRoleAssignment:
    assignment = AppRoleAssignment(
        principal=_principal(table, config), app=table.text("app"), role=table.text("role")
    )
    table.done()
    return assignment


def _assignment(table: _Table, config: LabConfig) -> RoleAssignment:
    object_id = _principal(table, config)
    role = table.text("role")
    if role not in KNOWN_ROLES:
        raise table.error("role", f"unknown role {role!r}; known: {', '.join(KNOWN_ROLES)}")
    scope = table.text("scope")
    if not _SCOPE.fullmatch(scope):
        raise table.error(
            "scope", f"{scope!r}: use /keyvault, /storage or /storage/containers/{{name}}"
        )
    tree = KNOWN_ROLES[role]
    if scope != "/" and not (scope == tree or scope.startswith(tree + "/")):
        raise table.error("scope", f"{role!r} applies under {tree}, not at {scope!r}")
    table.done()
    return RoleAssignment(principal=object_id, role=role, scope=scope)
