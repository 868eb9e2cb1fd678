"""What the toy Key Vault and Blob Storage are built from.

- :func:`protected_app`: tokenguard in front (Azure's bare challenge), Azure's request-id
  headers (:class:`LabHeaders`), every error rendered by the service's :class:`Dialect`;
- :class:`Resource`: what the handlers share, with the RBAC check by object id;
- :class:`ServiceOptions`: what the lab passes every service's ``create_app``;
- :class:`ServiceError`: the one error handlers raise;
- :class:`Database`: SQLite, each write durable before it is acknowledged.
"""

from .app import (
    CALLER_HEADER,
    LabHeaders,
    Resource,
    ServiceOptions,
    caller_label,
    identity_of,
    protected_app,
)
from .db import Database
from .errors import Dialect, ServiceError

__all__ = [
    "CALLER_HEADER",
    "Database",
    "Dialect",
    "LabHeaders",
    "Resource",
    "ServiceError",
    "ServiceOptions",
    "caller_label",
    "identity_of",
    "protected_app",
]
