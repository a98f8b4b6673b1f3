"""Row-lock order on PostgreSQL: signing out everywhere (which revokes the user's upload tokens)
and a batch of chunks moving an upload to ``receiving`` run side by side without deadlock.

Each test drives two real transactions step by step: the batch (``record_chunks``) stops
right after its first statement, holding whatever locks that statement took; the other
transaction then runs until it waits for a row lock the batch holds; then the batch goes on.
Taking the upload rows in one order everywhere, neither side may be aborted.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from relaypacs.db.base import utcnow
from relaypacs.resources import Resources
from relaypacs.uploads import service
from relaypacs.uploads.models import Upload, UploadFile, UploadState
from relaypacs.uploads.service import ChunkArrival, ChunkOutcome, hash_token
from tests.support import uploads
from tests.support.accounts import sign_in
from tests.support.databases import backend_of

CHUNK = uploads.SMALL_CHUNK
T = TypeVar("T")


class _PausedSession(AsyncSession):
    """Stops after its first statement (its locks held) until ``go`` is set."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.first_done = asyncio.Event()
        self.go = asyncio.Event()

    async def execute(self, *args: Any, **kwargs: Any) -> Any:
        result = await super().execute(*args, **kwargs)
        if not self.first_done.is_set():
            self.first_done.set()
            await self.go.wait()
        return result


def _resources(app: FastAPI) -> Resources:
    resources: Resources = app.state.resources
    if backend_of(resources.settings.database_url) != "postgresql":
        pytest.skip("row locks: PostgreSQL only (SQLite serialises writers with BEGIN IMMEDIATE)")
    return resources


async def _pid(session: AsyncSession) -> int:
    return int((await session.execute(text("SELECT pg_backend_pid()"))).scalar_one())


async def _until_waiting(resources: Resources, pid: int, task: asyncio.Future[Any]) -> bool:
    """Whether the backend ``pid`` came to wait for a lock (False: ``task`` ended first)."""
    deadline = time.monotonic() + 20
    async with resources.engine.connect() as connection:
        while not task.done():
            waiting = await connection.scalar(
                text("SELECT wait_event_type FROM pg_stat_activity WHERE pid = :pid"),
                {"pid": pid},
            )
            await connection.rollback()
            if waiting == "Lock":
                return True
            assert time.monotonic() < deadline, "the transaction neither waits nor ends"
            await asyncio.sleep(0.02)
    return False


async def _stream(data: bytes) -> AsyncIterator[bytes]:
    yield data


async def _arrival(
    resources: Resources,
    session: uploads.Session,
    index: int,
    *,
    mark_receiving: bool,
) -> ChunkArrival:
    """A chunk of the upload's first file, staged as the chunk route stages it."""
    body = session.chunk(0, index)
    async with resources.sessionmaker() as db:
        upload = await db.get(Upload, uuid.UUID(session.id))
        upload_file = await db.get(UploadFile, uuid.UUID(session.file_id()))
        assert upload is not None
        assert upload_file is not None
        target = service.prepare_chunk(
            upload=upload,
            upload_file=upload_file,
            index=index,
            content_md5=uploads.md5_b64(body),
            content_length=len(body),
        )
    staged = await service.stage_chunk(resources.chunk_store, target, _stream(body))
    return ChunkArrival(
        target,
        staged,
        mark_receiving=mark_receiving,
        token_hash=hash_token(session.body["upload_token"]),
    )


async def _batch(
    session: AsyncSession, resources: Resources, arrivals: list[ChunkArrival]
) -> list[ChunkOutcome]:
    """One group-commit transaction, as :class:`ChunkCommitter` runs it."""
    try:
        outcomes = await service.record_chunks(session, resources.chunk_store, arrivals)
        await session.commit()
        return outcomes
    finally:
        for arrival in arrivals:
            await arrival.staged.discard()


#: The second transaction: given a future for its backend pid (set once its session runs).
Second = Callable[["asyncio.Future[int]"], Awaitable[T]]


async def _paused_batch(
    resources: Resources, arrivals: list[ChunkArrival], second: Second[T]
) -> tuple[list[ChunkOutcome], T]:
    """The batch holds the locks of its first statement while ``second`` runs until it waits
    for one of them; then the batch goes on. Neither may fail."""
    # The application's session settings (its bind included), with the pausing class.
    paused = async_sessionmaker(class_=_PausedSession, **resources.sessionmaker.kw)
    async with paused() as batch_session:
        assert isinstance(batch_session, _PausedSession)
        batch = asyncio.create_task(_batch(batch_session, resources, arrivals))
        await asyncio.wait_for(batch_session.first_done.wait(), 20)
        assert not batch.done(), batch
        pid: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        other = asyncio.ensure_future(second(pid))
        await asyncio.wait_for(asyncio.wait([other, pid], return_when=asyncio.FIRST_COMPLETED), 20)
        # The interleaving under test: the second transaction waits for a row the batch holds.
        assert pid.done(), other
        assert await _until_waiting(resources, pid.result(), other), other
        batch_session.go.set()
        batch_result, other_result = await asyncio.wait_for(
            asyncio.gather(batch, other, return_exceptions=True), 30
        )
    # A deadlock aborts one side (asyncpg's DeadlockDetectedError, as a DBAPIError).
    assert not isinstance(batch_result, BaseException), repr(batch_result)
    assert not isinstance(other_result, BaseException), repr(other_result)
    return batch_result, other_result


# --- the transactions ----------------------------------------------------------------------


async def _revoke(resources: Resources, user_id: uuid.UUID, pid: asyncio.Future[int]) -> int:
    """What signing out everywhere does to the upload tokens, in its own transaction."""
    async with resources.sessionmaker() as db:
        pid.set_result(await _pid(db))
        ended = await service.end_upload_tokens(db, user_id, utcnow())
        await db.commit()
        return ended


async def _state(resources: Resources, upload_id: str) -> UploadState:
    async with resources.sessionmaker() as db:
        state = await db.scalar(select(Upload.state).where(Upload.id == uuid.UUID(upload_id)))
        assert state is not None
        return state


async def _two_uploads(
    client: httpx.AsyncClient, headers: dict[str, str]
) -> tuple[uploads.Session, uploads.Session]:
    """Two uploads of one user (two chunks each), in id order."""
    first = await uploads.start(client, headers, [b"a" * CHUNK * 2])
    second = await uploads.start(client, headers, [b"b" * CHUNK * 2])
    low, high = sorted((first, second), key=lambda s: uuid.UUID(s.id))
    return low, high


# --- the tests -----------------------------------------------------------------------------


async def test_logout_all_and_a_batch_moving_the_higher_upload_to_receiving(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    """The batch has chunks of two uploads of the user, and moves the higher-id one (still
    created) to receiving; the lower one already receives. Meanwhile the user signs out
    everywhere, which locks every unexpired upload of the user to revoke its token."""
    resources = _resources(app)
    user = await sign_in(client, app)
    low, high = await _two_uploads(client, user.headers)
    assert (await uploads.put(client, low, 0, 0)).status_code == 201  # low receives
    arrivals = [
        await _arrival(resources, low, 1, mark_receiving=False),
        await _arrival(resources, high, 0, mark_receiving=True),
    ]

    outcomes, ended = await _paused_batch(
        resources, arrivals, lambda pid: _revoke(resources, user.id, pid)
    )

    # The batch went first (the revocation waited for it): both chunks stored, then both
    # tokens ended.
    assert outcomes == [True, True]
    assert ended == 2
    assert await _state(resources, high.id) is UploadState.receiving
    for session in (low, high):
        response = await uploads.put(client, session, 0, 1)
        assert response.status_code == 401, response.text
        assert response.json()["code"] == "upload_token_revoked"


async def test_a_batch_waiting_behind_logout_all_stores_nothing(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    """The other way round: the revocation holds its locks first; the batch waits, then finds
    the tokens revoked and stores nothing."""
    resources = _resources(app)
    user = await sign_in(client, app)
    low, high = await _two_uploads(client, user.headers)
    assert (await uploads.put(client, low, 0, 0)).status_code == 201
    arrivals = [
        await _arrival(resources, low, 1, mark_receiving=False),
        await _arrival(resources, high, 0, mark_receiving=True),
    ]
    async with resources.sessionmaker() as revocation:
        assert await service.end_upload_tokens(revocation, user.id, utcnow()) == 2
        async with resources.sessionmaker() as batch_session:
            pid = await _pid(batch_session)
            batch = asyncio.create_task(_batch(batch_session, resources, arrivals))
            assert await _until_waiting(resources, pid, batch), "waits for the revocation"
            await revocation.commit()
            outcomes = await asyncio.wait_for(batch, 30)
    assert [type(o).__name__ for o in outcomes] == ["UploadTokenRevoked", "UploadTokenRevoked"]
    assert await _state(resources, high.id) is UploadState.created
    status = await uploads.status(client, low, headers=user.headers)
    assert status["bytes_received"] == CHUNK


async def test_two_batches_moving_the_same_upload_to_receiving(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    """Two processes receive the first chunks of the same uploads at once: both batches ask
    to move the higher upload to receiving (share lock, then exclusive: no upgrade deadlock)."""
    resources = _resources(app)
    user = await sign_in(client, app)
    low, high = await _two_uploads(client, user.headers)
    assert (await uploads.put(client, low, 0, 0)).status_code == 201
    first = [
        await _arrival(resources, low, 1, mark_receiving=False),
        await _arrival(resources, high, 0, mark_receiving=True),
    ]
    second = [
        await _arrival(resources, low, 1, mark_receiving=True),
        await _arrival(resources, high, 1, mark_receiving=True),
    ]

    async def other(pid: asyncio.Future[int]) -> list[ChunkOutcome]:
        async with resources.sessionmaker() as db:
            pid.set_result(await _pid(db))
            return await _batch(db, resources, second)

    outcomes, other_outcomes = await _paused_batch(resources, first, other)

    assert outcomes == [True, True]
    assert other_outcomes == [False, True]
    assert await _state(resources, high.id) is UploadState.receiving
