"""The toy Key Vault's state: secrets, their versions and soft deletion, in SQLite.

Functions here take a ``sqlite3.Connection`` and run inside one
:class:`~examples.lab.resource.Database` call (a write is one transaction). Names are
case-insensitive, as in Key Vault: ``key`` is the lower-cased name and ``name`` keeps
the spelling of the first ``set``. The latest version is the one created last.
"""

from __future__ import annotations

import json
import sqlite3
import uuid
from dataclasses import dataclass, field
from typing import Any, Final

from ..resource import ServiceError

__all__ = [
    "SCHEMA",
    "Attributes",
    "Deleted",
    "SecretVersion",
    "VaultError",
    "delete",
    "get_deleted",
    "get_version",
    "list_deleted",
    "list_latest",
    "list_versions",
    "purge",
    "purge_expired",
    "recover",
    "set_secret",
    "update",
]

SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS secrets (
    key TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    deleted_date INTEGER,
    scheduled_purge_date INTEGER
);
CREATE TABLE IF NOT EXISTS versions (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    key TEXT NOT NULL REFERENCES secrets(key) ON DELETE CASCADE,
    version TEXT NOT NULL,
    value TEXT NOT NULL,
    content_type TEXT,
    enabled INTEGER NOT NULL,
    nbf INTEGER,
    exp INTEGER,
    created INTEGER NOT NULL,
    updated INTEGER NOT NULL,
    tags TEXT,
    UNIQUE (key, version)
);
CREATE INDEX IF NOT EXISTS versions_by_key ON versions (key, seq);
"""

_COLUMNS: Final = (
    "s.name, v.seq, v.version, v.value, v.content_type, v.enabled, v.nbf, v.exp, "
    "v.created, v.updated, v.tags"
)
_FROM: Final = "FROM secrets s JOIN versions v ON v.key = s.key"
_LATEST: Final = "v.seq = (SELECT MAX(seq) FROM versions WHERE key = s.key)"


class VaultError(ServiceError):
    """An answer other than success, shaped like Key Vault's ``{"error": {...}}``."""


def not_found(name: str, version: str | None = None) -> VaultError:
    """Key Vault's 404 for a missing secret or version (``name`` is already validated)."""
    what = name if version is None else f"{name}/{version}"
    return VaultError(
        404,
        "SecretNotFound",
        f"A secret with (name/id) {what} was not found in this key vault. If you recently "
        "deleted this secret you may be able to recover it using the correct recovery command.",
    )


def _deleted_not_found(name: str) -> VaultError:
    return VaultError(404, "SecretNotFound", f"Deleted Secret not found: {name}")


@dataclass(frozen=True, slots=True)
class Attributes:
    """The settable attributes; ``None`` leaves a value unchanged on update."""

    enabled: bool | None = None
    nbf: int | None = None
    exp: int | None = None


@dataclass(frozen=True, slots=True)
class SecretVersion:
    """One stored version of a secret."""

    name: str
    seq: int
    version: str
    value: str
    content_type: str | None
    enabled: bool
    nbf: int | None
    exp: int | None
    created: int
    updated: int
    tags: dict[str, str] | None = field(default=None, hash=False)


@dataclass(frozen=True, slots=True)
class Deleted:
    """Soft-deletion facts of a deleted secret."""

    deleted_date: int
    scheduled_purge_date: int


def _row(row: tuple[Any, ...]) -> SecretVersion:
    name, seq, version, value, ctype, enabled, nbf, exp, created, updated, tags = row
    return SecretVersion(
        name=name,
        seq=seq,
        version=version,
        value=value,
        content_type=ctype,
        enabled=bool(enabled),
        nbf=nbf,
        exp=exp,
        created=created,
        updated=updated,
        tags=json.loads(tags) if tags is not None else None,
    )


def _tags_json(tags: dict[str, str] | None) -> str | None:
    return None if tags is None else json.dumps(tags)


def _state(conn: sqlite3.Connection, name: str) -> tuple[str, Deleted | None] | None:
    row = conn.execute(
        "SELECT name, deleted_date, scheduled_purge_date FROM secrets WHERE key = ?",
        (name.lower(),),
    ).fetchone()
    if row is None:
        return None
    return row[0], (Deleted(row[1], row[2]) if row[1] is not None else None)


def _latest(conn: sqlite3.Connection, key: str) -> SecretVersion:
    row = conn.execute(f"SELECT {_COLUMNS} {_FROM} WHERE s.key = ? AND {_LATEST}", (key,))
    found = row.fetchone()
    if found is None:  # a secret row always has a version; this is a broken database
        raise RuntimeError("secret without versions")
    return _row(found)


def purge_expired(conn: sqlite3.Connection, now: int) -> None:
    """Purge deleted secrets whose scheduled purge date has passed (Key Vault does this itself)."""
    conn.execute("DELETE FROM secrets WHERE scheduled_purge_date <= ?", (now,))


# -- live secrets ------------------------------------------------------------


def set_secret(
    conn: sqlite3.Connection,
    name: str,
    value: str,
    *,
    content_type: str | None,
    attributes: Attributes,
    tags: dict[str, str] | None,
    now: int,
) -> SecretVersion:
    """Add a new version (creating the secret); 409 while a deleted secret holds the name."""
    purge_expired(conn, now)
    key = name.lower()
    state = _state(conn, name)
    if state is not None and state[1] is not None:
        raise VaultError(
            409,
            "Conflict",
            f"Secret {state[0]} is currently in a deleted but recoverable state, and its name "
            "cannot be reused; in this state, the secret can only be recovered or purged.",
        )
    if state is None:
        conn.execute("INSERT INTO secrets (key, name) VALUES (?, ?)", (key, name))
    conn.execute(
        "INSERT INTO versions (key, version, value, content_type, enabled, nbf, exp, created,"
        " updated, tags) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            key,
            uuid.uuid4().hex,
            value,
            content_type,
            True if attributes.enabled is None else attributes.enabled,
            attributes.nbf,
            attributes.exp,
            now,
            now,
            _tags_json(tags),
        ),
    )
    return _latest(conn, key)


def get_version(conn: sqlite3.Connection, name: str, version: str | None) -> SecretVersion:
    """A version (the latest when ``version`` is None) of a secret that is not deleted."""
    state = _state(conn, name)
    if state is None or state[1] is not None:
        raise not_found(name, version)
    if version is None:
        return _latest(conn, name.lower())
    row = conn.execute(
        f"SELECT {_COLUMNS} {_FROM} WHERE s.key = ? AND v.version = ?",
        (name.lower(), version.lower()),
    ).fetchone()
    if row is None:
        raise not_found(name, version)
    return _row(row)


def update(
    conn: sqlite3.Connection,
    name: str,
    version: str | None,
    *,
    content_type: str | None,
    attributes: Attributes,
    tags: dict[str, str] | None,
    now: int,
) -> SecretVersion:
    """Change attributes, content type or tags of a version; the value never changes."""
    current = get_version(conn, name, version)
    conn.execute(
        "UPDATE versions SET content_type = ?, enabled = ?, nbf = ?, exp = ?, tags = ?,"
        " updated = ? WHERE seq = ?",
        (
            current.content_type if content_type is None else content_type,
            current.enabled if attributes.enabled is None else attributes.enabled,
            current.nbf if attributes.nbf is None else attributes.nbf,
            current.exp if attributes.exp is None else attributes.exp,
            _tags_json(current.tags if tags is None else tags),
            now,
            current.seq,
        ),
    )
    return get_version(conn, name, current.version)


def list_latest(
    conn: sqlite3.Connection, after: str | None, limit: int
) -> tuple[list[SecretVersion], str | None]:
    """Secrets that are not deleted, by name; returns a page and the key to continue after."""
    rows = conn.execute(
        f"SELECT {_COLUMNS} {_FROM} WHERE s.deleted_date IS NULL AND s.key > ? AND {_LATEST}"
        " ORDER BY s.key LIMIT ?",
        (after or "", limit + 1),
    ).fetchall()
    page = [_row(r) for r in rows[:limit]]
    return page, (page[-1].name.lower() if len(rows) > limit else None)


def list_versions(
    conn: sqlite3.Connection, name: str, after: int | None, limit: int
) -> tuple[list[SecretVersion], int | None]:
    """Versions of a secret that is not deleted, oldest first; a page and where to go on."""
    state = _state(conn, name)
    if state is None or state[1] is not None:
        return [], None
    rows = conn.execute(
        f"SELECT {_COLUMNS} {_FROM} WHERE s.key = ? AND v.seq > ? ORDER BY v.seq LIMIT ?",
        (name.lower(), after or 0, limit + 1),
    ).fetchall()
    page = [_row(r) for r in rows[:limit]]
    return page, (page[-1].seq if len(rows) > limit else None)


# -- soft deletion -----------------------------------------------------------


def delete(
    conn: sqlite3.Connection, name: str, *, now: int, retention_days: int
) -> tuple[SecretVersion, Deleted]:
    """Soft-delete every version of a secret; it stays recoverable for ``retention_days``."""
    latest = get_version(conn, name, None)
    deleted = Deleted(now, now + retention_days * 86_400)
    conn.execute(
        "UPDATE secrets SET deleted_date = ?, scheduled_purge_date = ? WHERE key = ?",
        (deleted.deleted_date, deleted.scheduled_purge_date, name.lower()),
    )
    return latest, deleted


def get_deleted(conn: sqlite3.Connection, name: str, *, now: int) -> tuple[SecretVersion, Deleted]:
    """The latest version of a deleted secret, with its deletion facts (404 once purged,
    including when its scheduled purge date has passed)."""
    state = _state(conn, name)
    if state is None or state[1] is None or state[1].scheduled_purge_date <= now:
        raise _deleted_not_found(name)
    return _latest(conn, name.lower()), state[1]


def list_deleted(
    conn: sqlite3.Connection, after: str | None, limit: int, *, now: int
) -> tuple[list[tuple[SecretVersion, Deleted]], str | None]:
    """Deleted secrets not yet due for purging, by name; a page and the key to go on after."""
    rows = conn.execute(
        f"SELECT {_COLUMNS}, s.deleted_date, s.scheduled_purge_date {_FROM}"
        " WHERE s.deleted_date IS NOT NULL AND s.scheduled_purge_date > ? AND s.key > ?"
        f" AND {_LATEST} ORDER BY s.key LIMIT ?",
        (now, after or "", limit + 1),
    ).fetchall()
    page = [(_row(r[:-2]), Deleted(r[-2], r[-1])) for r in rows[:limit]]
    return page, (page[-1][0].name.lower() if len(rows) > limit else None)


def recover(conn: sqlite3.Connection, name: str, *, now: int) -> SecretVersion:
    """Undo a soft delete; the latest version is live again."""
    purge_expired(conn, now)
    get_deleted(conn, name, now=now)
    conn.execute(
        "UPDATE secrets SET deleted_date = NULL, scheduled_purge_date = NULL WHERE key = ?",
        (name.lower(),),
    )
    return _latest(conn, name.lower())


def purge(conn: sqlite3.Connection, name: str, *, now: int) -> None:
    """Forget a deleted secret and all its versions for good."""
    purge_expired(conn, now)
    get_deleted(conn, name, now=now)
    conn.execute("DELETE FROM secrets WHERE key = ?", (name.lower(),))
