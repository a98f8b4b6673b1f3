"""The chunk store: where chunk bytes and assembled instances live (tusd's DataStore, smaller).

The upload protocol never touches a disk or a bucket directly; it talks to :class:`ChunkStore`.
Two implementations: :mod:`relaypacs.uploads.stores.filesystem` (the default, under DATA_DIR) and
:mod:`relaypacs.uploads.stores.s3` (any S3-compatible endpoint), chosen by
``RELAYPACS_STORAGE_URL`` in :func:`open_chunk_store`.

A chunk is written in two steps so that concurrent writers can never overwrite each other's bytes:
:meth:`ChunkStore.stage` streams a request body to a private temporary object while computing its
MD5 and size; only after the database has accepted the chunk row does :meth:`StagedChunk.commit`
move it to its final key atomically. Every key is built here, from ids only: a client-supplied
file name never becomes part of a path.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import hashlib
import os
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from relaypacs.config import KIB, Settings

#: How many body bytes are gathered before one hashing/writing step runs in a worker thread:
#: large enough that thread hops are cheap, small enough that memory per request stays tiny.
WRITE_BATCH_BYTES = 256 * KIB
READ_BLOCK_BYTES = 256 * KIB
#: Read size of an object that is a local file (see :meth:`ChunkStore.local_path`): larger, as
#: each hand-off to a thread waits for the busy event loop on its way back; still a small bound
#: on each reader's memory (forwarding streams a few instances at once).
LOCAL_READ_BYTES = 1024 * KIB


class ChunkTooLarge(Exception):
    """The body grew past the size the caller allowed; nothing was kept."""


class StoreUnavailable(Exception):
    """The store could not be reached or refused an operation (transient)."""


@dataclass(frozen=True)
class ObjectInfo:
    size: int
    sha256: str


class StagedChunk(Protocol):
    """A verified-size, hashed body waiting for the database's decision."""

    @property
    def md5(self) -> bytes: ...

    @property
    def size(self) -> int: ...

    async def commit(self, key: str) -> None:
        """Make the bytes durable under ``key`` (atomic replace) and release the temporary."""

    async def discard(self) -> None:
        """Drop the temporary; safe to call after :meth:`commit` or twice."""


class ChunkStore(Protocol):
    #: Local temporaries of this process (assembly and ZIP entries are worked on here).
    staging: StagingArea

    @property
    def description(self) -> str:
        """Where the bytes go, for logs and readiness (no secrets)."""

    async def stage(self, body: AsyncIterator[bytes], *, max_size: int) -> StagedChunk:
        """Stream ``body`` to a temporary object while hashing; :class:`ChunkTooLarge` past
        ``max_size`` bytes (the temporary is removed before raising)."""

    async def commit_many(self, items: Sequence[tuple[StagedChunk, str]]) -> None:
        """:meth:`StagedChunk.commit` for each (staged chunk, key) of a batch, all durable when
        this returns (the file store fsyncs each directory once for the whole batch)."""

    def read(self, key: str) -> AsyncIterator[bytes]:
        """Stream the object at ``key`` (chunk or instance); ``FileNotFoundError`` if absent."""

    def local_path(self, key: str) -> Path | None:
        """The local file holding ``key`` when the store keeps objects as files on this machine
        (read it there, in a worker thread, instead of streaming it); ``None`` otherwise."""

    async def put_file(self, key: str, path: Path) -> None:
        """Store a local file (assembled file or unpacked instance) durably under ``key``."""

    async def fetch_to_file(self, key: str, path: Path) -> None:
        """Copy the object at ``key`` to a local file (validation needs a seekable file)."""

    async def size_of(self, key: str) -> int | None:
        """The stored size of ``key``, or ``None`` when it does not exist."""

    async def delete_prefix(self, prefix: str) -> int:
        """Delete every object under ``prefix`` (e.g. one upload); returns how many."""

    async def clean_stale_temporaries(self, older_than_seconds: float) -> int:
        """Remove temporaries left by interrupted writes (a crash between stage and commit)."""

    async def check(self) -> None:
        """Raise if the store is not usable (readiness)."""

    async def close(self) -> None: ...


def upload_prefix(upload_id: uuid.UUID) -> str:
    return f"uploads/{upload_id}/"


def chunk_key(upload_id: uuid.UUID, file_id: uuid.UUID, index: int) -> str:
    # Zero-padded so that a listing sorts in chunk order.
    return f"uploads/{upload_id}/chunks/{file_id}/{index:08d}"


def chunks_prefix(upload_id: uuid.UUID) -> str:
    return f"uploads/{upload_id}/chunks/"


def file_key(upload_id: uuid.UUID, file_id: uuid.UUID) -> str:
    return f"uploads/{upload_id}/files/{file_id}"


def instance_key(upload_id: uuid.UUID, instance_id: uuid.UUID) -> str:
    return f"uploads/{upload_id}/instances/{instance_id}"


def open_chunk_store(settings: Settings) -> ChunkStore:
    """The store named by ``RELAYPACS_STORAGE_URL`` (default: ``DATA_DIR/chunks``)."""
    url = settings.storage_url or (settings.data_dir / "chunks").resolve().as_uri()
    if url.startswith("file://"):
        from relaypacs.uploads.stores.filesystem import FilesystemChunkStore

        return FilesystemChunkStore(Path(url.removeprefix("file://")))
    if url.startswith("s3://"):
        from relaypacs.uploads.stores.s3 import S3ChunkStore

        bucket, _, prefix = url.removeprefix("s3://").partition("/")
        return S3ChunkStore(
            bucket=bucket,
            prefix=prefix.strip("/"),
            endpoint_url=settings.s3_endpoint_url,
            region=settings.s3_region,
            staging_dir=settings.data_dir / "staging",
        )
    raise ValueError("RELAYPACS_STORAGE_URL must start with file:// or s3://")


class StagingArea:
    """Local temporaries of one process, in a directory that process holds a lock on.

    Each process works in its own ``<root>/<random>/`` directory and holds an exclusive ``flock``
    on ``<root>/<random>/.lock`` while it lives. A directory whose lock can be taken belongs to a
    dead process (killed mid-write): :meth:`clean_stale` removes it at once, while live processes
    sharing the same root keep their in-flight temporaries.
    """

    def __init__(self, root: Path) -> None:
        import fcntl

        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self.directory = root / uuid.uuid4().hex
        self.directory.mkdir()
        self._lock_file = (self.directory / ".lock").open("wb")
        fcntl.flock(self._lock_file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)

    def new_path(self, suffix: str = ".part") -> Path:
        return self.directory / f"{uuid.uuid4().hex}{suffix}"

    def clean_stale(self) -> int:
        """Blocking: remove the directories of dead processes; returns the files removed."""
        import fcntl
        import shutil

        removed = 0
        for directory in self.root.iterdir():
            if directory == self.directory or not directory.is_dir():
                continue
            lock_path = directory / ".lock"
            try:
                with lock_path.open("ab") as lock:
                    fcntl.flock(lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                    removed += sum(1 for p in directory.iterdir() if p.name != ".lock")
                    shutil.rmtree(directory, ignore_errors=True)
            except BlockingIOError:
                continue  # a live process owns it
            except FileNotFoundError:
                shutil.rmtree(directory, ignore_errors=True)
        return removed

    def close(self) -> None:
        import shutil

        shutil.rmtree(self.directory, ignore_errors=True)
        self._lock_file.close()


async def stage_to_file(
    body: AsyncIterator[bytes], path: Path, *, max_size: int, fsync: bool
) -> tuple[bytes, int]:
    """Stream ``body`` into a new file at ``path`` while hashing; returns (MD5 digest, size).

    Blocking writes and hashing run in worker threads in batches of :data:`WRITE_BATCH_BYTES`.
    On any error (including :class:`ChunkTooLarge` and a client that disconnects) the file is
    removed before the exception propagates.
    """
    md5 = hashlib.md5(usedforsecurity=False)
    size = 0
    pending: list[bytes] = []
    pending_size = 0
    descriptor: int | None = None
    written = 0

    def write(pieces: list[bytes]) -> None:
        # The file is opened by the first step that has bytes: one thread hand-off fewer. The
        # pieces go to the kernel as they came off the socket (no joined copy on the event loop).
        nonlocal descriptor, written
        if descriptor is None:
            descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        length = 0
        for piece in pieces:
            md5.update(piece)
            length += len(piece)
        _write_all(descriptor, pieces)
        if fsync and length:
            # Start writing these pages back now, while the next batch arrives, so that the
            # fsync at the end waits for less (dirty pages stay cached; nothing is dropped).
            os.posix_fadvise(descriptor, written, length, os.POSIX_FADV_DONTNEED)
        written += length

    def close() -> None:
        nonlocal descriptor
        if descriptor is not None:
            closing, descriptor = descriptor, None
            os.close(closing)

    def finish(pieces: list[bytes]) -> None:
        write(pieces)
        assert descriptor is not None
        if fsync:
            os.fsync(descriptor)
        close()

    def abandon() -> None:
        close()
        path.unlink(missing_ok=True)

    # One batch is hashed and written in a thread while the next one is received (at most one
    # at a time: the MD5 sees the bytes in order, and memory stays at two batches a request).
    writing: asyncio.Future[None] | None = None
    try:
        async for piece in body:
            size += len(piece)
            if size > max_size:
                raise ChunkTooLarge
            pending.append(piece)
            pending_size += len(piece)
            # A body of max_size bytes cannot legally go on: its last batch goes with the fsync.
            if pending_size >= WRITE_BATCH_BYTES and size < max_size:
                if writing is not None:
                    await asyncio.shield(writing)
                writing = _run_in_io_thread(write, pending)
                pending = []
                pending_size = 0
        if writing is not None:
            await asyncio.shield(writing)
        writing = _run_in_io_thread(finish, pending)
        await asyncio.shield(writing)
    except BaseException:
        # A thread cannot be interrupted (and a cancelled await does not stop it): the
        # descriptor is closed and the file removed once the thread is done with them, even if
        # this request is cancelled again meanwhile.
        await asyncio.shield(_abandon_after(writing, abandon))
        raise
    return md5.digest(), size


async def _abandon_after(writing: asyncio.Future[None] | None, abandon: Callable[[], None]) -> None:
    if writing is not None:
        await asyncio.wait([writing])
        if not writing.cancelled():
            writing.exception()  # retrieved: the error that matters is propagating
    await _run_in_io_thread(abandon)


def _write_all(descriptor: int, pieces: list[bytes]) -> None:
    views = [memoryview(piece) for piece in pieces if piece]
    while views:
        done = os.writev(descriptor, views[:_IOV_MAX])
        while views and done >= len(views[0]):
            done -= len(views[0])
            views.pop(0)
        if done:
            views[0] = views[0][done:]


#: Chunk bodies are hashed, written and fsync'd here: a plain executor costs the event loop
#: about half of what anyio's thread hand-off does (no cancel scope, no capacity limiter), and
#: it is the hottest hand-off of the gateway (a few per chunk).
_IO_THREADS = 16
_IOV_MAX = 1024
_io_executor: concurrent.futures.ThreadPoolExecutor | None = None


def _run_in_io_thread(function: Callable[..., None], *args: object) -> asyncio.Future[None]:
    global _io_executor
    if _io_executor is None:
        _io_executor = concurrent.futures.ThreadPoolExecutor(
            _IO_THREADS, thread_name_prefix="relaypacs-chunk-io"
        )
    return asyncio.get_running_loop().run_in_executor(_io_executor, function, *args)
