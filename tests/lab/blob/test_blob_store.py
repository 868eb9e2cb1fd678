"""Listing logic of the blob store, on SQLite directly: prefixes, delimiters and page edges."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from examples.lab import blob
from examples.lab.blob import store
from examples.lab.resource import Database

from tokenguard.testing import LocalIssuer

from .._kit import STORAGE, Principals

NAMES = ["a/1", "a/2", "a/b/3", "b", "c/1", "c/2", "d", "é/x"]


def _put(
    db: Database,
    name: str,
    file: str,
    *,
    size: int = 1,
    now: int = 0,
    content: store.ContentSettings | None = None,
    metadata: dict[str, str] | None = None,
    conditions: store.Conditions | None = None,
) -> Any:
    """Put a blob of ``size`` bytes (zero MD5) in acct/box; returns what put_blob returns."""
    return db.write_sync(
        partial(
            store.put_blob,
            account="acct",
            container="box",
            name=name,
            upload=store.Upload(file=file, size=size, md5=b"\0" * 16),
            content=content or store.ContentSettings(),
            metadata=metadata or {},
            conditions=conditions or store.Conditions(),
            now=now,
        )
    )


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    database = Database(tmp_path / "blob.db", store.SCHEMA)
    database.write_sync(
        partial(store.create_container, account="acct", name="box", metadata={}, now=0)
    )
    for i, name in enumerate(NAMES):
        _put(database, name, f"f{i}", size=i)
    yield database
    database.close()


def _pages(db: Database, *, prefix: str = "", delimiter: str | None, limit: int) -> list[list[str]]:
    pages: list[list[str]] = []
    after = ""
    while True:
        entries, next_after = db.read_sync(
            partial(
                store.list_blobs,
                account="acct",
                container="box",
                prefix=prefix,
                delimiter=delimiter,
                after=after,
                limit=limit,
            )
        )
        pages.append([e if isinstance(e, str) else e.name for e in entries])
        if next_after is None:
            return pages
        after = next_after
        assert len(pages) < 50, "paging does not end"


def test_flat_listing_pages_through_everything(db: Database) -> None:
    assert _pages(db, delimiter=None, limit=3) == [NAMES[0:3], NAMES[3:6], NAMES[6:8]]
    assert _pages(db, delimiter=None, limit=8) == [NAMES]


@pytest.mark.parametrize("limit", [1, 2, 3, 10])
def test_delimiter_collapses_prefixes_across_page_edges(db: Database, limit: int) -> None:
    pages = _pages(db, delimiter="/", limit=limit)
    flat = [entry for page in pages for entry in page]
    assert flat == ["a/", "b", "c/", "d", "é/"]
    assert all(len(page) <= limit for page in pages)
    assert len(pages) == -(-len(flat) // limit)  # no empty trailing page


def test_prefix_with_delimiter_lists_one_level(db: Database) -> None:
    assert _pages(db, prefix="a/", delimiter="/", limit=10) == [["a/1", "a/2", "a/b/"]]
    assert _pages(db, prefix="c", delimiter=None, limit=1) == [["c/1"], ["c/2"]]
    assert _pages(db, prefix="zzz", delimiter="/", limit=5) == [[]]


def test_missing_container_is_404(db: Database) -> None:
    with pytest.raises(store.StorageError) as missing:
        db.read_sync(
            partial(
                store.list_blobs,
                account="acct",
                container="nope",
                prefix="",
                delimiter=None,
                after="",
                limit=5,
            )
        )
    assert (missing.value.status, missing.value.code) == (404, "ContainerNotFound")


def test_overwrite_keeps_creation_time_and_returns_the_replaced_file(db: Database) -> None:
    saved, replaced = _put(
        db,
        "b",
        "new",
        now=100,
        content=store.ContentSettings(content_type="text/plain"),
        metadata={"k": "v"},
    )
    assert isinstance(saved, store.Blob)
    assert replaced == "f3"
    assert (saved.created, saved.last_modified, saved.file) == (0, 100, "new")
    assert db.read_sync(store.referenced_files) == {f"f{i}" for i in range(8) if i != 3} | {"new"}


def test_failed_condition_rolls_back(db: Database) -> None:
    with pytest.raises(store.StorageError) as exists:
        _put(db, "d", "other", now=100, conditions=store.Conditions(if_none_match=frozenset({"*"})))
    assert exists.value.code == "BlobAlreadyExists"
    assert (
        db.read_sync(partial(store.get_blob, account="acct", container="box", name="d")).file
        == "f6"
    )


def test_startup_sweeps_unfinished_uploads_and_unreferenced_bodies(
    tmp_path: Path, lab_issuer: LocalIssuer, principals: Principals
) -> None:
    root = tmp_path / "storage"
    files = store.BlobFiles(root)
    db = Database(root / "blob.db", store.SCHEMA)
    db.write_sync(partial(store.create_container, account="acct", name="box", metadata={}, now=0))
    _put(db, "kept", "kept-body", size=4)
    db.close()
    (files.data / "kept-body").write_bytes(b"kept")
    (files.data / "orphan").write_bytes(b"renamed, never committed")  # crash before commit
    (files.tmp / "partial").write_bytes(b"half an upl")  # crash while receiving
    validator = lab_issuer.validator(audiences=[STORAGE], require_roles_or_scopes=False)
    blob.create_app(
        validator=validator,
        rbac=principals.rbac(),
        state_dir=tmp_path,
        public_url="https://storage.test",
        authority="http://127.0.0.1:1",
        tenant_id=lab_issuer.tenant_id,
    ).state.resource.db.close()
    asyncio.run(validator.aclose())
    assert sorted(p.name for p in files.data.iterdir()) == ["kept-body"]
    assert list(files.tmp.iterdir()) == []
