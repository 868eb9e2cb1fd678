"""The tenant the lab emulates: one VM, its managed identities, the tenant's APIs (app
registrations with app-role assignments) and the resources' role assignments (RBAC).

:class:`LabConfig` is read from TOML by :func:`examples.lab.runtime.load_config`; the
identity endpoints and the issuer only read it.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from .apps import AppDirectory, AppRegistration, AppRoleAssignment
from .rbac import RoleAssignment, RoleAssignments

__all__ = [
    "ImdsSettings",
    "IssuerSettings",
    "LabConfig",
    "LabUser",
    "ManagedIdentity",
    "VirtualMachine",
]


@dataclass(frozen=True, kw_only=True)
class LabUser:
    """A member user of the tenant, who signs in on the issuer's authorize page."""

    #: Display name (the ``name`` claim).
    name: str
    #: Sign-in name (``preferred_username`` in v2 tokens, ``upn`` in v1); the login_hint.
    preferred_username: str
    object_id: str


@dataclass(frozen=True, kw_only=True)
class ManagedIdentity:
    """A managed identity: system-assigned (the VM's) or user-assigned."""

    name: str
    object_id: str
    client_id: str
    #: The ARM id as Entra writes it in ``xms_mirid`` (lower-case ``resourcegroups``).
    resource_id: str
    system_assigned: bool


@dataclass(frozen=True, kw_only=True)
class VirtualMachine:
    """The lab VM as ``/metadata/instance`` describes it."""

    name: str
    subscription_id: str
    resource_group: str
    location: str
    vm_id: str
    vm_size: str
    os_type: str
    private_ip: str
    identity: ManagedIdentity

    @property
    def resource_id(self) -> str:
        """The VM's ARM resource id (as ``/metadata/instance`` shows it)."""
        return (
            f"/subscriptions/{self.subscription_id}/resourceGroups/{self.resource_group}"
            f"/providers/Microsoft.Compute/virtualMachines/{self.name}"
        )


@dataclass(frozen=True, kw_only=True)
class IssuerSettings:
    """How the issuer signs and publishes."""

    token_lifetime: int = 86_400
    jwks_max_age: int = 3_600
    rotation_overlap: float = 60.0
    rotation_retire_after: float = 60.0


@dataclass(frozen=True, kw_only=True)
class ImdsSettings:
    """IMDS emulator limits."""

    rate_limit: float = 5.0


@dataclass(frozen=True, kw_only=True)
class LabConfig:
    """The whole lab: one tenant, one VM, its identities, the tenant's APIs (app
    registrations) with their app-role assignments, and the resources' role assignments."""

    tenant_id: str
    vm: VirtualMachine
    identities: tuple[ManagedIdentity, ...]
    role_assignments: tuple[RoleAssignment, ...]
    app_registrations: tuple[AppRegistration, ...] = ()
    app_role_assignments: tuple[AppRoleAssignment, ...] = ()
    users: tuple[LabUser, ...] = ()
    issuer: IssuerSettings = IssuerSettings()
    imds: ImdsSettings = ImdsSettings()
    storage_account: str = "labstorage"
    source: str = "<memory>"

    @property
    def all_identities(self) -> tuple[ManagedIdentity, ...]:
        """The system-assigned identity first, then the user-assigned ones."""
        return (self.vm.identity, *self.identities)

    def identity(self, name: str) -> ManagedIdentity:
        """The identity called ``name`` (the VM's name for the system-assigned one)."""
        for identity in self.all_identities:
            if identity.name == name:
                return identity
        raise KeyError(name)

    def user(self, login_hint: str) -> LabUser | None:
        """The user whose ``preferred_username`` (case-insensitive) or object id is
        ``login_hint``, or ``None``."""
        folded = login_hint.lower()
        for user in self.users:
            if folded in (user.preferred_username.lower(), user.object_id):
                return user
        return None

    def user_assigned(
        self,
        *,
        client_id: str | None = None,
        object_id: str | None = None,
        resource_id: str | None = None,
    ) -> ManagedIdentity | None:
        """The user-assigned identity matching one selector (case-insensitive), or ``None``."""
        for identity in self.identities:
            if client_id is not None and identity.client_id == client_id.lower():
                return identity
            if object_id is not None and identity.object_id == object_id.lower():
                return identity
            if resource_id is not None and identity.resource_id.lower() == resource_id.lower():
                return identity
        return None

    def principal(self, name_or_id: str) -> str | None:
        """The object id of the identity called ``name_or_id``, or ``name_or_id`` as an
        object id (any GUID: principals outside the lab are allowed); else ``None``."""
        for identity in self.all_identities:
            if identity.name == name_or_id:
                return identity.object_id
        try:
            return str(uuid.UUID(name_or_id))
        except (ValueError, AttributeError, TypeError):
            return None

    def rbac(self) -> RoleAssignments:
        """The resources' role assignments (Azure RBAC), principals as object ids."""
        return RoleAssignments(self.role_assignments)

    def app_directory(self) -> AppDirectory:
        """A fresh directory of the app registrations and app-role assignments."""
        return AppDirectory(self.app_registrations, self.app_role_assignments)
