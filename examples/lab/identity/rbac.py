"""Role assignments like Azure RBAC: principal (object id) -> role -> scope.

The toy resources ask these by the caller's ``oid`` on every request, as Key Vault and
Storage do; nothing of it goes into tokens (those carry app roles of registered APIs
only, see :mod:`examples.lab.identity.apps`).

Scopes are paths; an assignment covers its scope and everything below it, as in Azure
(an assignment on the storage account covers each container, not the other way round):

    /keyvault                       the toy Key Vault
    /storage                        the toy Storage account
    /storage/containers/{name}      one container
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

__all__ = ["KNOWN_ROLES", "RoleAssignment", "RoleAssignments"]

#: The built-in roles the toy resources understand, with the scope tree they apply to.
KNOWN_ROLES: Final = {
    "Key Vault Secrets User": "/keyvault",
    "Key Vault Secrets Officer": "/keyvault",
    "Key Vault Administrator": "/keyvault",
    "Storage Blob Data Reader": "/storage",
    "Storage Blob Data Contributor": "/storage",
    "Storage Blob Data Owner": "/storage",
}


@dataclass(frozen=True, slots=True)
class RoleAssignment:
    """One assignment: ``principal`` (object id) holds ``role`` at ``scope``."""

    principal: str
    role: str
    scope: str


def _covers(assigned: str, requested: str) -> bool:
    assigned = assigned.rstrip("/") or "/"
    requested = requested.rstrip("/") or "/"
    return (
        assigned == "/"
        or requested.lower() == assigned.lower()
        or requested.lower().startswith(assigned.lower() + "/")
    )


class RoleAssignments:
    """The lab's role assignments, queried by the toy resources."""

    def __init__(self, assignments: Iterable[RoleAssignment]) -> None:
        self.assignments = tuple(assignments)

    def roles_at(self, principal: str, scope: str) -> frozenset[str]:
        """Roles ``principal`` holds at ``scope`` (inherited from parent scopes)."""
        principal = principal.lower()
        return frozenset(
            a.role
            for a in self.assignments
            if a.principal.lower() == principal and _covers(a.scope, scope)
        )

    def has_any(self, principal: str, roles: Iterable[str], scope: str) -> bool:
        """Whether ``principal`` holds at least one of ``roles`` at ``scope``."""
        return not self.roles_at(principal, scope).isdisjoint(roles)
