"""The floor: the least a Python ASGI server must do per chunk to keep RelayPACS's promise 1.

Not a product and not a peer: a measuring stick for ``bench.uploads.bench``. It answers the
question "is the 1.3x target out of reach for Python on this machine, or is it our code?" by
doing, per ``PUT /{upload}/{index}`` with ``Content-MD5``, only the durable steps RelayPACS
does, each in as few thread hand-offs as possible, on the same uvicorn (uvloop + httptools):

1. the body is received (no framework, no middleware, no routing) and then hashed, written to
   a temporary and fsync'd in **one** hand-off to a thread;
2. the chunk joins a group commit: **one** hand-off inserts the batch's rows into SQLite (WAL,
   ``synchronous=FULL``, as RelayPACS configures it), renames the files into place (one
   directory per upload, as RelayPACS keeps them: a single directory of every chunk grows
   slower to change and to fsync as the run goes on), fsyncs each changed directory and
   commits; then every request of the batch answers 201.

Everything else RelayPACS does per chunk is missing on purpose: authentication, the route and
rate checks, logging, metrics, duplicate and conflict handling, streaming the body in bounded
pieces (this keeps the whole chunk in memory until it is written). The distance between the
floor and RelayPACS is therefore what our own software costs per chunk; the distance between
the floor and @tus/server is what durability and the checksum cost.

Run by the bench: ``python -m uvicorn bench.uploads.floor:app`` with ``FLOOR_DIR`` set.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import sqlite3
import uuid
from collections.abc import Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

ROOT = Path(os.environ.get("FLOOR_DIR", "floor-data"))
STAGING = ROOT / "staging"
CHUNKS = ROOT / "chunks"


def _open_database() -> sqlite3.Connection:
    connection = sqlite3.connect(ROOT / "floor.db", check_same_thread=False, isolation_level=None)
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("PRAGMA synchronous=FULL")
    connection.execute(
        "CREATE TABLE IF NOT EXISTS chunk (upload TEXT, chunk_index INTEGER, size INTEGER, "
        "md5 TEXT, PRIMARY KEY (upload, chunk_index))"
    )
    return connection


def _stage(pieces: list[bytes]) -> tuple[Path, bytes, int]:
    md5 = hashlib.md5(usedforsecurity=False)
    for piece in pieces:
        md5.update(piece)
    path = STAGING / uuid.uuid4().hex
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.writev(descriptor, pieces)
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
    return path, md5.digest(), sum(map(len, pieces))


class _GroupCommit:
    """One transaction, one directory fsync and one commit for every chunk that waited."""

    def __init__(self) -> None:
        self._database: sqlite3.Connection | None = None
        self._pending: list[tuple[tuple[str, int, int, str], Path, asyncio.Future[None]]] = []
        self._flusher: asyncio.Task[None] | None = None

    async def record(self, row: tuple[str, int, int, str], staged: Path) -> None:
        answer: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append((row, staged, answer))
        if self._flusher is None:
            self._flusher = asyncio.create_task(self._flush())
        await answer

    async def _flush(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while self._pending:
                batch, self._pending = self._pending, []
                try:
                    await loop.run_in_executor(None, self._commit, batch)
                except Exception as exc:
                    for _, _, answer in batch:
                        answer.set_exception(exc)
                else:
                    for _, _, answer in batch:
                        answer.set_result(None)
        finally:
            self._flusher = None

    def _commit(self, batch: list[tuple[tuple[str, int, int, str], Path, Any]]) -> None:
        if self._database is None:
            self._database = _open_database()
        database = self._database
        database.execute("BEGIN IMMEDIATE")
        try:
            database.executemany(
                "INSERT OR REPLACE INTO chunk VALUES (?, ?, ?, ?)", [row for row, _, _ in batch]
            )
            changed: set[Path] = set()
            for (upload, index, _, _), staged, _ in batch:
                directory = CHUNKS / upload
                if not directory.is_dir():
                    directory.mkdir()
                    changed.add(CHUNKS)
                os.replace(staged, directory / str(index))
                changed.add(directory)
            for path in changed:
                _fsync_directory(path)
            database.execute("COMMIT")
        except BaseException:
            database.execute("ROLLBACK")
            raise


def _fsync_directory(path: Path) -> None:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


_committer = _GroupCommit()


async def _respond(send: Send, status: int) -> None:
    await send(
        {"type": "http.response.start", "status": status, "headers": [(b"content-length", b"0")]}
    )
    await send({"type": "http.response.body", "body": b""})


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            STAGING.mkdir(parents=True, exist_ok=True)
            CHUNKS.mkdir(parents=True, exist_ok=True)
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    pieces: list[bytes] = []
    while True:
        message = await receive()
        if message.get("body"):
            pieces.append(message["body"])
        if not message.get("more_body"):
            break
    _, upload, index = scope["path"].split("/")
    if not (upload.isalnum() and index.isdigit()):
        # Only the bench talks to it, but an upload name becomes a directory name.
        await _respond(send, 404)
        return
    expected = base64.b64decode(dict(scope["headers"]).get(b"content-md5", b""))
    loop = asyncio.get_running_loop()
    staged, md5, size = await loop.run_in_executor(None, _stage, pieces)
    if md5 != expected:
        await loop.run_in_executor(None, staged.unlink)
        await _respond(send, 400)
        return
    await _committer.record((upload, int(index), size, md5.hex()), staged)
    await _respond(send, 201)
