"""Group commit of chunk PUTs: one transaction for concurrent chunks, each answered on its own."""

from __future__ import annotations

import asyncio
import hashlib
import socket
import sqlite3
import time
import types
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, closing
from pathlib import Path
from typing import Any, cast

import asyncpg
import httpx
import pytest
from fastapi import FastAPI, Request

from relaypacs.uploads.dependencies import get_committer
from relaypacs.uploads.ingest import ChunkCommitter
from relaypacs.uploads.store import chunk_key
from tests.support import uploads
from tests.support.accounts import sign_in
from tests.support.databases import throwaway_database
from tests.support.servers import RelayServer

CHUNK = uploads.SMALL_CHUNK


@asynccontextmanager
async def _one_batch(
    app: FastAPI, monkeypatch: pytest.MonkeyPatch, expected: int
) -> AsyncIterator[list[int]]:
    """Hold the committer until ``expected`` chunks wait, so that they form one batch.

    Yields the sizes of the transactions the committer runs meanwhile.
    """
    committer: ChunkCommitter = get_committer(cast(Request, types.SimpleNamespace(app=app)))
    gate = asyncio.Event()
    sizes: list[int] = []
    flush_pending = committer._flush_pending
    transaction = committer._transaction

    async def gated() -> None:
        await gate.wait()
        await flush_pending()

    async def counted(arrivals: list[Any]) -> Any:
        sizes.append(len(arrivals))
        return await transaction(arrivals)

    monkeypatch.setattr(committer, "_flush_pending", gated)
    monkeypatch.setattr(committer, "_transaction", counted)

    async def release() -> None:
        deadline = time.monotonic() + 30
        while len(committer._pending) < expected:
            assert time.monotonic() < deadline, len(committer._pending)
            await asyncio.sleep(0.01)
        gate.set()

    releaser = asyncio.create_task(release())
    try:
        yield sizes
    finally:
        gate.set()
        await releaser


async def test_a_batch_answers_each_chunk_on_its_own(
    client: httpx.AsyncClient, app: FastAPI, monkeypatch: pytest.MonkeyPatch
) -> None:
    user = await sign_in(client, app)
    data = bytes(range(256)) * (CHUNK * 5 // 256)  # 5 chunks
    session = await uploads.start(client, user.headers, [data])
    other = await uploads.start(client, user.headers, [b"o" * CHUNK])
    assert (await uploads.put(client, session, 0, 4)).status_code == 201
    wrong = b"w" * CHUNK
    async with _one_batch(app, monkeypatch, expected=6) as sizes:
        responses = await asyncio.gather(
            uploads.put(client, session, 0, 0),
            uploads.put(client, session, 0, 1, md5=uploads.md5_b64(b"not these bytes")),
            uploads.put(client, session, 0, 2),
            uploads.put(client, session, 0, 2),  # the same chunk twice in one batch
            uploads.put(client, session, 0, 3),
            uploads.put(client, session, 0, 4, wrong),  # already stored, different bytes
            uploads.put(client, other, 0, 0),  # another upload in the same batch
        )
    codes = [r.status_code for r in responses]
    assert codes[0] == 201
    assert codes[1] == 400
    assert responses[1].json()["code"] == "checksum_mismatch"
    assert sorted(codes[2:4]) == [200, 201]
    assert codes[4] == 201
    assert codes[5] == 409
    assert responses[5].json()["code"] == "chunk_conflict"
    assert codes[6] == 201
    assert sizes == [6], "the six verified chunks were recorded in one transaction"
    status = await uploads.status(client, session)
    assert status["files"][0]["missing_chunks"] == [[1, 1]]
    assert status["bytes_received"] == 4 * CHUNK
    store = app.state.resources.chunk_store
    for index in (0, 2, 3, 4):
        key = chunk_key(uuid.UUID(session.id), uuid.UUID(session.file_id()), index)
        assert b"".join([b async for b in store.read(key)]) == session.chunk(0, index)


async def test_a_batch_answers_no_longer_receiving_per_upload(
    client: httpx.AsyncClient, app: FastAPI, monkeypatch: pytest.MonkeyPatch
) -> None:
    user = await sign_in(client, app)
    receiving = await uploads.start(client, user.headers, [b"r" * CHUNK])
    cancelled = await uploads.start(client, user.headers, [b"c" * CHUNK * 2])
    assert (await uploads.put(client, cancelled, 0, 0)).status_code == 201  # route remembered
    response = await client.delete(
        f"{uploads.API}/uploads/{cancelled.id}", headers=cancelled.token_headers
    )
    assert response.status_code == 204
    async with _one_batch(app, monkeypatch, expected=2) as sizes:
        ok, refused = await asyncio.gather(
            uploads.put(client, receiving, 0, 0), uploads.put(client, cancelled, 0, 1)
        )
    assert sizes == [2]
    assert ok.status_code == 201
    assert refused.status_code == 409
    assert refused.json()["code"] == "upload_not_receiving"


# --- a real process killed while its chunks wait for their commit ------------------------------


@pytest.fixture
def postgres_url(tmp_path: Path) -> Iterator[str]:
    with throwaway_database("postgresql", tmp_path) as url:
        yield url


def _staged(data_dir: Path) -> list[Path]:
    root = data_dir / "chunks" / "tmp"
    return [p for p in root.rglob("*.part") if p.is_file()] if root.exists() else []


def _send_put(server: RelayServer, session: uploads.Session, index: int) -> socket.socket:
    """Send one whole chunk PUT and do not wait for the answer."""
    body = session.chunk(0, index)
    head = (
        f"PUT {session.chunk_url(0, index)} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Content-Length: {len(body)}\r\nContent-MD5: {uploads.md5_b64(body)}\r\n"
        f"X-Upload-Token: {session.body['upload_token']}\r\n\r\n"
    ).encode()
    connection = socket.create_connection(("127.0.0.1", server.port))
    connection.sendall(head + body)
    connection.settimeout(0.2)
    return connection


def _answered(connection: socket.socket) -> bytes:
    try:
        return connection.recv(100)
    except (TimeoutError, ConnectionError):
        return b""


@pytest.mark.slow
async def test_killed_between_fsync_and_commit_acknowledges_nothing_missing(
    tmp_path: Path, postgres_url: str
) -> None:
    data_dir = tmp_path / "data"
    server = RelayServer(data_dir=data_dir, database_url=postgres_url, log_path=tmp_path / "s.log")
    data = bytes(range(256)) * (CHUNK * 6 // 256)  # 6 chunks
    dsn = postgres_url.replace("postgresql+asyncpg://", "postgresql://")
    try:
        server.start()
        async with httpx.AsyncClient(base_url=server.url, timeout=60) as client:
            user = await _sign_up(client)
            session = await uploads.start(client, user, [data])
            for index in (0, 1):
                assert (await uploads.put(client, session, 0, index)).status_code == 201
        # Hold the upload's row: the next batch stages, fsyncs and verifies its chunks, then
        # waits for its share lock, before any row is inserted or any file renamed.
        blocker = await asyncpg.connect(dsn)
        try:
            transaction = blocker.transaction()
            await transaction.start()
            await blocker.execute(
                "SELECT 1 FROM upload WHERE id = $1 FOR UPDATE", uuid.UUID(session.id)
            )
            waiting = [_send_put(server, session, index) for index in (2, 3, 4)]
            deadline = time.monotonic() + 30
            while len([p for p in _staged(data_dir) if p.stat().st_size == CHUNK]) < 3:
                assert time.monotonic() < deadline, _staged(data_dir)
                await asyncio.sleep(0.05)
            await asyncio.sleep(0.5)  # into the batch, behind the lock
            assert [_answered(c) for c in waiting] == [b"", b"", b""]
            server.kill()
            for connection in waiting:
                connection.close()
            await transaction.rollback()
        finally:
            await blocker.close()

        server.start()
        assert _staged(data_dir) == []  # the unacknowledged temporaries are gone
        async with httpx.AsyncClient(base_url=server.url, timeout=60) as client:
            status = await uploads.status(client, session)
            assert status["files"][0]["missing_chunks"] == [[2, 5]]
            assert status["bytes_received"] == 2 * CHUNK
            for index in range(6):
                expected = 200 if index < 2 else 201
                assert (await uploads.put(client, session, 0, index)).status_code == expected
            status = await uploads.status(client, session)
            assert status["bytes_received"] == len(data)
        chunks = data_dir / "chunks" / "uploads" / session.id / "chunks" / session.file_id()
        stored = b"".join(p.read_bytes() for p in sorted(chunks.iterdir()))
        assert hashlib.sha256(stored).hexdigest() == hashlib.sha256(data).hexdigest()
    finally:
        server.stop()


async def _sign_up(client: httpx.AsyncClient) -> dict[str, str]:
    username = f"ingest_{time.monotonic_ns()}"
    password = "Vq8#relay-Pacs!"
    response = await client.post(
        f"{uploads.API}/auth/register",
        json={"username": username, "email": f"{username}@example.org", "password": password},
    )
    assert response.status_code == 201, response.text
    login = await client.post(
        f"{uploads.API}/auth/login", json={"username": username, "password": password}
    )
    assert login.status_code == 200, login.text
    return {"Authorization": f"Bearer {login.json()['access_token']}"}


async def test_a_request_waiting_for_the_sqlite_turn_holds_no_write_lock(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    # The committer holds the turn while it takes SQLite's write lock. A chunk PUT signed in
    # with a bearer token reads its user first: if that read's transaction (BEGIN IMMEDIATE)
    # were still open while the PUT waits for the turn, the two would wait for each other
    # until busy_timeout (30 s) and the committer's whole batch would fail.
    settings = app.state.settings
    if not settings.is_sqlite:
        pytest.skip("only SQLite has one write lock and the in-process turn")
    owner = await sign_in(client, app)
    study = await uploads.start(client, owner.headers, [b"x" * 100])
    turn: asyncio.Lock = app.state.uploads_sqlite_turn
    database = settings.resolved_database_url.split("///", 1)[1]

    def take_the_write_lock() -> None:
        with closing(sqlite3.connect(database, timeout=3, isolation_level=None)) as connection:
            connection.execute("BEGIN IMMEDIATE")
            connection.execute("ROLLBACK")

    async with turn:  # as the committer does around its batch
        put = asyncio.create_task(uploads.put(client, study, 0, 0, headers=owner.headers))
        deadline = time.monotonic() + 10
        # Private, but the only way to see the request is now queued for the turn.
        while not getattr(turn, "_waiters", None):
            assert time.monotonic() < deadline, "the PUT never queued for the turn"
            await asyncio.sleep(0.01)
        await asyncio.to_thread(take_the_write_lock)  # "database is locked" without the fix
    response = await put
    assert response.status_code == 201, response.text
