"""The toy Key Vault (secrets), behind tokenguard, authorizing by RBAC on the caller's oid.

- ``app``: routes, handlers and Key Vault's JSON errors (:func:`create_app`);
- ``parse``: names, versions, bodies and paging checked like Azure;
- ``store``: secrets, versions and soft deletion in SQLite.
"""

from .app import DEFAULT_RECOVERABLE_DAYS, KEYVAULT_AUDIENCE, READ_ROLES, WRITE_ROLES, create_app
from .parse import MAX_BODY_BYTES, MAX_VALUE_BYTES

__all__ = [
    "DEFAULT_RECOVERABLE_DAYS",
    "KEYVAULT_AUDIENCE",
    "MAX_BODY_BYTES",
    "MAX_VALUE_BYTES",
    "READ_ROLES",
    "WRITE_ROLES",
    "create_app",
]
