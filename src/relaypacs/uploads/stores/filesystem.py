"""The default chunk store: files under one directory (DATA_DIR/chunks).

Durability follows the usual recipe: write a temporary, ``fsync`` it, ``rename`` it over the final
name (atomic on POSIX), then ``fsync`` the directory so that the rename itself survives power loss.
A reader therefore sees either no chunk or the whole verified chunk, never a torn one.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import BinaryIO

from anyio import to_thread

from relaypacs.uploads.store import LOCAL_READ_BYTES, StagedChunk, StagingArea, stage_to_file

#: Key components that would leave the store or name no object ("" also refuses "/a" and "a//b").
_NOT_A_NAME = frozenset({"", ".", ".."})


def _fsync_directory(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _make_directories(root: Path, directory: Path) -> list[Path]:
    """Create ``directory`` (below ``root``); returns the parents whose entries changed.

    The new entries are not durable until those parents are fsync'd: the caller does that once
    per parent for a whole batch (see :meth:`FilesystemChunkStore.install_many`).
    """
    missing: list[Path] = []
    current = directory
    while current != root and not current.exists():
        missing.append(current)
        current = current.parent
    changed: list[Path] = []
    for path in reversed(missing):
        # Created by another request at the same moment, it may not be durable yet either: our
        # rename into it must not depend on that request's fsync of the parent.
        with contextlib.suppress(FileExistsError):
            path.mkdir()
        changed.append(path.parent)
    return changed


class _StagedFile:
    def __init__(self, store: FilesystemChunkStore, path: Path, md5: bytes, size: int) -> None:
        self._store = store
        self._path: Path | None = path
        self.md5 = md5
        self.size = size

    def take(self) -> Path:
        """The temporary's path, now owned by the caller (commit)."""
        assert self._path is not None, "staged chunk already committed or discarded"
        path, self._path = self._path, None
        return path

    async def commit(self, key: str) -> None:
        await to_thread.run_sync(self._store.install, self.take(), key)

    async def discard(self) -> None:
        path, self._path = self._path, None
        if path is not None:
            await to_thread.run_sync(lambda: path.unlink(missing_ok=True))


class FilesystemChunkStore:
    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        self.root.mkdir(parents=True, exist_ok=True)
        # Temporaries live on the same file system as the objects so that rename is atomic.
        self.staging = StagingArea(self.root / "tmp")

    @property
    def description(self) -> str:
        return f"file://{self.root}"

    def path_of(self, key: str) -> Path:
        # Keys are built from ids only; this guards against a future caller passing user input.
        # A check of the text, not ``resolve()``: that is an lstat per path component, and this
        # runs on the event loop for every chunk and instance.
        parts = key.split("/")
        if "\x00" in key or any(part in _NOT_A_NAME for part in parts):
            raise ValueError("key escapes the store")
        return self.root.joinpath(*parts)

    def install(self, source: Path, key: str) -> None:
        """Blocking: atomically move an fsync'd local file to ``key``."""
        self.install_many([(source, key)])

    def install_many(self, items: Sequence[tuple[Path, str]]) -> None:
        """Blocking: :meth:`install` for a batch, each changed directory fsync'd once.

        Every directory and rename of the batch is made first and only then fsync'd: the first
        fsync commits the file system's journal with all of them, so the others find little
        left to do. (A study of 1,000 one-chunk files puts each chunk in a new directory; an
        fsync of the parent after each ``mkdir`` cost one journal commit per file.)
        """
        to_sync: dict[Path, None] = {}
        try:
            for source, key in items:
                target = self.path_of(key)
                if target.parent not in to_sync:
                    to_sync.update(dict.fromkeys(_make_directories(self.root, target.parent)))
                    to_sync[target.parent] = None
                os.replace(source, target)
        except BaseException:
            for source, _ in items:
                source.unlink(missing_ok=True)  # the temporaries not renamed yet
            raise
        for directory in to_sync:
            _fsync_directory(directory)

    async def commit_many(self, items: Sequence[tuple[StagedChunk, str]]) -> None:
        paths: list[tuple[Path, str]] = []
        for staged, key in items:
            assert isinstance(staged, _StagedFile), "staged by another store"
            paths.append((staged.take(), key))
        await to_thread.run_sync(self.install_many, paths)

    async def stage(self, body: AsyncIterator[bytes], *, max_size: int) -> _StagedFile:
        path = self.staging.new_path()
        md5, size = await stage_to_file(body, path, max_size=max_size, fsync=True)
        return _StagedFile(self, path, md5, size)

    def local_path(self, key: str) -> Path:
        return self.path_of(key)

    async def read(self, key: str) -> AsyncIterator[bytes]:
        path = self.path_of(key)

        def open_and_read() -> tuple[BinaryIO, bytes]:
            handle = path.open("rb")
            try:
                return handle, handle.read(LOCAL_READ_BYTES)
            except BaseException:
                handle.close()
                raise

        # Each hand-off to a thread waits for the busy event loop on its way back, so they are
        # few: opening goes with the first read, and a short read ends the file (a regular file
        # reads short only at its end) without one more read to see nothing.
        handle, block = await to_thread.run_sync(open_and_read)
        try:
            while block:
                yield block
                if len(block) < LOCAL_READ_BYTES:
                    break
                block = await to_thread.run_sync(handle.read, LOCAL_READ_BYTES)
        finally:
            handle.close()

    async def put_file(self, key: str, path: Path) -> None:
        def put() -> None:
            with path.open("rb+") as handle:
                os.fsync(handle.fileno())
            if path.is_relative_to(self.staging.root):
                self.install(path, key)  # our own temporary: a rename, no copy
            else:
                copy = self.staging.new_path()
                shutil.copyfile(path, copy)
                with copy.open("rb+") as handle:
                    os.fsync(handle.fileno())
                self.install(copy, key)

        await to_thread.run_sync(put)

    async def fetch_to_file(self, key: str, path: Path) -> None:
        source = self.path_of(key)
        await to_thread.run_sync(shutil.copyfile, source, path)

    async def size_of(self, key: str) -> int | None:
        path = self.path_of(key)

        def size() -> int | None:
            try:
                return path.stat().st_size
            except FileNotFoundError:
                return None

        return await to_thread.run_sync(size)

    async def delete_prefix(self, prefix: str) -> int:
        directory = self.path_of(prefix.rstrip("/"))

        def delete() -> int:
            if directory.is_file():
                # A prefix that names one object deletes it, as an S3 listing by prefix does.
                directory.unlink(missing_ok=True)
                return 1
            if not directory.exists():
                return 0
            count = sum(1 for p in directory.rglob("*") if p.is_file())
            shutil.rmtree(directory, ignore_errors=True)
            return count

        return await to_thread.run_sync(delete)

    async def clean_stale_temporaries(self, older_than_seconds: float) -> int:
        # Ownership is decided by the staging area's process locks, not by age.
        return await to_thread.run_sync(self.staging.clean_stale)

    async def check(self) -> None:
        def probe() -> None:
            probe_path = self.staging.new_path(".probe")
            probe_path.write_bytes(b"ok")
            probe_path.unlink()

        await to_thread.run_sync(probe)

    async def close(self) -> None:
        await to_thread.run_sync(self.staging.close)
