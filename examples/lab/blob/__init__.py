"""The toy Blob Storage, behind tokenguard, authorizing by RBAC on the caller's oid.

- ``app``: routes and handlers (:func:`create_app`);
- ``service``: the state the handlers share, name rules, authorization, Storage's errors;
- ``bodies``: uploads streamed to durable files, ranged downloads;
- ``shapes``: XML bodies, headers, and request parsing (listings refuse what XML cannot carry);
- ``store``: containers and blob metadata in SQLite, bodies in immutable files.
"""

from . import store
from .app import DEFAULT_MAX_UPLOAD_BYTES, DEFAULT_VERSION, create_app
from .service import READ_ROLES, STORAGE_AUDIENCES, STORAGE_RESOURCE, WRITE_ROLES

__all__ = [
    "DEFAULT_MAX_UPLOAD_BYTES",
    "DEFAULT_VERSION",
    "READ_ROLES",
    "STORAGE_AUDIENCES",
    "STORAGE_RESOURCE",
    "WRITE_ROLES",
    "create_app",
    "store",
]
