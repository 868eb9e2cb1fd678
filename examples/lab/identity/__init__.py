"""Identity: the Entra-like tenant, its issuer, and the endpoints that hand out tokens.

- :class:`LabConfig` and friends: the tenant (VM, managed identities, app registrations,
  RBAC role assignments), read by :func:`examples.lab.runtime.load_config`;
- :class:`KeyRing`: signing keys on disk, rotated on a schedule;
- :class:`LabIssuer`: discovery, JWKS, admin routes, and the tokens themselves;
- :class:`TokenService`: the token cache and rate limits IMDS and App Service share;
- :func:`create_imds_app`, :func:`create_app_service_app`: the two token endpoints;
- :class:`IdentityEndpoints`: the issuer, its token service and the three apps, wired in one call;
- :class:`AppDirectory`: which API app roles go into tokens; :class:`RoleAssignments`:
  Azure RBAC, which the toy resources ask by object id (tokens for them carry no roles).
"""

from .apps import AppDirectory, AppRegistration, AppRoleAssignment, TokenVersion
from .appservice import TOKEN_PATH, create_app_service_app
from .endpoints import IdentityEndpoints
from .imds import create_imds_app
from .issuer import ADMIN_HEADER, IssuedToken, LabIssuer
from .keys import KeyRing
from .rbac import KNOWN_ROLES, RoleAssignment, RoleAssignments
from .signin import CODE_LIFETIME, MAX_FORM_BODY
from .tenant import (
    ImdsSettings,
    IssuerSettings,
    LabConfig,
    LabUser,
    ManagedIdentity,
    VirtualMachine,
)
from .tokens import MAX_CACHED_TOKENS, MAX_RESOURCE_LENGTH, REUSE_MARGIN, TokenService

__all__ = [
    "ADMIN_HEADER",
    "CODE_LIFETIME",
    "KNOWN_ROLES",
    "MAX_CACHED_TOKENS",
    "MAX_FORM_BODY",
    "MAX_RESOURCE_LENGTH",
    "REUSE_MARGIN",
    "TOKEN_PATH",
    "AppDirectory",
    "AppRegistration",
    "AppRoleAssignment",
    "IdentityEndpoints",
    "ImdsSettings",
    "IssuedToken",
    "IssuerSettings",
    "KeyRing",
    "LabConfig",
    "LabIssuer",
    "LabUser",
    "ManagedIdentity",
    "RoleAssignment",
    "RoleAssignments",
    "TokenService",
    "TokenVersion",
    "VirtualMachine",
    "create_app_service_app",
    "create_imds_app",
]
