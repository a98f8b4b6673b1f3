"""Group commit for chunk PUTs: the transaction boundary of the chunk route.

A chunk PUT answers 2xx only once its bytes are fsync'd (or acknowledged by S3), their MD5
verified and its row committed (promise 1). Committing each row on its own costs one database
commit — a WAL fsync on SQLite, where writers also queue for the one write lock — plus a
directory fsync per chunk. Instead, each request stages and verifies its body on its own and
then hands the chunk to :class:`ChunkCommitter`: the chunks that arrived meanwhile are recorded
in one transaction (:func:`relaypacs.uploads.service.record_chunks`), their files renamed into
place with one fsync per directory, and one commit answers them all. While a batch commits, the
next one gathers, so the batch size follows the load with no timer and no added latency for a
lone chunk.

Like a router, this module commits; the service below it never does.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass

import structlog
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from relaypacs.uploads import service
from relaypacs.uploads.exceptions import ChunkStoreUnavailable
from relaypacs.uploads.service import ChunkArrival, ChunkOutcome
from relaypacs.uploads.store import ChunkStore

log = structlog.get_logger(__name__)

#: At most this many chunks per transaction (bounds statement size and a batch's latency).
MAX_BATCH = 64


@dataclass(frozen=True)
class _Waiting:
    arrival: ChunkArrival
    answer: asyncio.Future[bool]


class ChunkCommitter:
    """Records staged chunks in batches, one transaction (and one commit) per batch.

    ``turn``: a context manager held around each transaction (SQLite's in-process write turn).
    """

    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        chunk_store: ChunkStore,
        turn: Callable[[], AbstractAsyncContextManager[None]],
        max_batch: int = MAX_BATCH,
    ) -> None:
        self._sessionmaker = sessionmaker
        self._store = chunk_store
        self._turn = turn
        self._max_batch = max_batch
        self._pending: list[_Waiting] = []
        self._flusher: asyncio.Task[None] | None = None

    async def record(self, arrival: ChunkArrival) -> bool:
        """Wait until the chunk's row is committed: ``True`` stored, ``False`` already stored.

        Raises the chunk's own error (conflict, no longer receiving, ...) or the batch's. The
        staged temporary belongs to the committer from now on (it discards it).
        """
        answer: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._pending.append(_Waiting(arrival, answer))
        if self._flusher is None:
            # No timer: the first chunk goes at once; those arriving meanwhile form the next batch.
            self._flusher = asyncio.create_task(self._flush_pending())
        return await answer

    async def _flush_pending(self) -> None:
        try:
            while self._pending:
                batch = self._pending[: self._max_batch]
                del self._pending[: self._max_batch]
                await self._flush(batch)
        finally:
            self._flusher = None
            # Only when cancelled with the event loop: nobody may wait forever.
            for waiting in self._pending:
                _answer(waiting, ChunkStoreUnavailable())
            self._pending.clear()

    async def _flush(self, batch: Sequence[_Waiting]) -> None:
        outcomes: list[bool | BaseException]
        try:
            try:
                outcomes = list(await self._transaction([w.arrival for w in batch]))
            except _DatabaseTrouble as trouble:
                if len(batch) == 1:
                    outcomes = [trouble.cause]
                else:
                    # Something no single chunk should cause: no staged file was consumed yet,
                    # so each chunk gets its own transaction (and its own answer).
                    log.warning("chunk_batch_retried_one_by_one", chunks=len(batch))
                    outcomes = []
                    for waiting in batch:
                        try:
                            outcomes.extend(await self._transaction([waiting.arrival]))
                        except _DatabaseTrouble as one:
                            outcomes.append(one.cause)
            except Exception as exc:
                # Store trouble, or a failed commit: no chunk of this batch may claim success.
                outcomes = [exc] * len(batch)
            for waiting, outcome in zip(batch, outcomes, strict=True):
                _answer(waiting, outcome)
        finally:
            for waiting in batch:
                _answer(waiting, ChunkStoreUnavailable())  # only if cancelled meanwhile
                await waiting.arrival.staged.discard()

    async def _transaction(self, arrivals: list[ChunkArrival]) -> list[ChunkOutcome]:
        async with self._turn(), self._sessionmaker() as session:
            try:
                outcomes = await service.record_chunks(session, self._store, arrivals)
            except ChunkStoreUnavailable:
                await session.rollback()
                raise
            except Exception as exc:
                await session.rollback()
                raise _DatabaseTrouble(exc) from exc
            # The winners' files are in place now: a failing commit fails the whole batch.
            await session.commit()
        return outcomes


class _DatabaseTrouble(Exception):
    """Recording a batch failed before any staged file was moved."""

    def __init__(self, cause: Exception) -> None:
        super().__init__(type(cause).__name__)
        self.cause = cause


def _answer(waiting: _Waiting, outcome: bool | BaseException) -> None:
    # A request whose client went away has cancelled its future: nothing to tell it.
    if waiting.answer.done():
        return
    if isinstance(outcome, bool):
        waiting.answer.set_result(outcome)
    else:
        waiting.answer.set_exception(outcome)
