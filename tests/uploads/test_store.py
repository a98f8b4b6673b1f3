"""The chunk store's own contract, on both implementations (filesystem and a real S3 server)."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from anyio import to_thread

from relaypacs.config import Settings
from relaypacs.uploads.store import chunk_key, instance_key, open_chunk_store, upload_prefix
from relaypacs.uploads.stores import filesystem
from relaypacs.uploads.stores.filesystem import FilesystemChunkStore


async def test_deleting_by_one_objects_key_removes_that_object_only(
    settings: Settings, tmp_path: Path
) -> None:
    # Discarding what a losing assembly run stored goes through here: on the file store a key
    # naming one object used to delete nothing, and the copies stayed until retention.
    store = await to_thread.run_sync(open_chunk_store, settings)
    try:
        upload_id = uuid.uuid4()
        first, second = (instance_key(upload_id, uuid.uuid4()) for _ in range(2))
        for key in (first, second):
            source = tmp_path / "object"
            source.write_bytes(key.encode())
            await store.put_file(key, source)

        assert await store.delete_prefix(first) == 1
        assert await store.size_of(first) is None
        assert await store.size_of(second) == len(second.encode())
        assert await store.delete_prefix(first) == 0
        assert await store.delete_prefix(upload_prefix(upload_id)) == 1
        assert await store.size_of(second) is None
    finally:
        await store.close()


async def test_a_batch_of_new_files_fsyncs_each_directory_once_after_every_rename(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A study of one-chunk files puts every chunk in a directory of its own. Each fsync of a
    # directory is a journal commit: the parent used to be fsync'd after every mkdir.
    store = FilesystemChunkStore(tmp_path / "store")
    upload_id = uuid.uuid4()
    keys = [chunk_key(upload_id, uuid.uuid4(), 0) for _ in range(8)]
    staged = []
    for n in range(len(keys)):
        staged.append(await store.stage(_body(f"chunk {n}".encode()), max_size=1024))

    synced: list[str] = []
    missing_at_sync: list[str] = []
    real_fsync = os.fsync

    def spying_fsync(descriptor: int) -> None:
        synced.append(os.readlink(f"/proc/self/fd/{descriptor}"))
        missing_at_sync.extend(k for k in keys if not store.path_of(k).exists())
        real_fsync(descriptor)  # the real one: only watched, not replaced

    monkeypatch.setattr(filesystem.os, "fsync", spying_fsync)
    await store.commit_many(list(zip(staged, keys, strict=True)))

    assert sorted(synced) == sorted(set(synced)), "a directory was fsync'd twice"
    chunk_dirs = {str(store.path_of(k).parent) for k in keys}
    assert chunk_dirs | {str(store.root / "uploads" / str(upload_id) / "chunks")} <= set(synced)
    assert missing_at_sync == [], "fsync'd before every rename of the batch was made"
    for n, key in enumerate(keys):
        assert store.path_of(key).read_bytes() == f"chunk {n}".encode()
    store.staging.close()


async def _body(data: bytes) -> AsyncIterator[bytes]:
    yield data


async def test_a_directory_another_request_just_made_is_still_made_durable_by_this_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Two chunk PUTs (or two processes) create the same new directory at once: the one that
    # loses the mkdir must not leave its renamed chunk's directory entry to the other's fsync.
    store = FilesystemChunkStore(tmp_path / "store")
    upload_id, file_id = uuid.uuid4(), uuid.uuid4()
    key = chunk_key(upload_id, file_id, 0)
    staged = await store.stage(_body(b"chunk"), max_size=1024)
    contested = store.path_of(key).parent
    real_mkdir = Path.mkdir

    def mkdir_that_loses_the_race(
        self: Path, mode: int = 0o777, parents: bool = False, exist_ok: bool = False
    ) -> None:
        real_mkdir(self, mode, parents, exist_ok)
        if self == contested:
            raise FileExistsError(self)  # the other request got there first

    synced: list[str] = []
    real_fsync = os.fsync

    def spying_fsync(descriptor: int) -> None:
        synced.append(os.readlink(f"/proc/self/fd/{descriptor}"))
        real_fsync(descriptor)

    monkeypatch.setattr(Path, "mkdir", mkdir_that_loses_the_race)
    monkeypatch.setattr(filesystem.os, "fsync", spying_fsync)
    await store.commit_many([(staged, key)])

    assert str(contested.parent) in synced
    assert store.path_of(key).read_bytes() == b"chunk"
    store.staging.close()


@pytest.mark.parametrize(
    "key",
    [
        "",
        "/etc/passwd",
        "../outside",
        "uploads/../../outside",
        "uploads//x",
        "uploads/./x",
        "a\x00b",
    ],
)
def test_a_key_that_would_leave_the_store_or_name_its_root_is_refused(
    tmp_path: Path, key: str
) -> None:
    store = FilesystemChunkStore(tmp_path / "chunks")
    with pytest.raises(ValueError, match="escapes the store"):
        store.path_of(key)


def test_a_key_names_a_file_below_the_root_and_its_local_path_is_that_file(
    tmp_path: Path,
) -> None:
    store = FilesystemChunkStore(tmp_path / "chunks")
    key = chunk_key(uuid.uuid4(), uuid.uuid4(), 3)
    assert store.path_of(key) == store.root.joinpath(*key.split("/"))
    assert store.local_path(key) == store.path_of(key)
