"""Send the missing chunks of one upload session, several at a time.

Chunks go out in file order (so reads stay sequential) from ``parallel`` workers sharing one
connection pool. Each chunk is read and hashed in a thread; the request itself is retried by
:class:`~relaypacs.client.api.GatewayClient` until it lands or the run gives up.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from relaypacs.client.api import ApiError, ClientError, GatewayClient, InFlightWindow, content_md5

CHECKSUM_RETRIES = 3


class UploadGone(ClientError):
    """The session no longer takes chunks (expired, cancelled, unknown): start a new one."""


class UploadClosed(ClientError):
    """The session stopped taking chunks because it was completed (or cancelled) meanwhile."""


class LocalFileChanged(ClientError):
    """The server holds different bytes for a chunk: the local file changed since it was sent."""


@dataclass(frozen=True)
class FilePlan:
    file_id: str
    path: Path
    size: int
    missing: list[int]


def read_chunk(path: Path, index: int, chunk_size: int) -> tuple[bytes, str]:
    with path.open("rb") as f:
        f.seek(index * chunk_size)
        data = f.read(chunk_size)
    return data, content_md5(data)


async def send_chunks(
    client: GatewayClient,
    upload_id: str,
    upload_token: str | None,
    chunk_size: int,
    plans: list[FilePlan],
    parallel: int = 4,
    on_bytes: Callable[[int], None] | None = None,
) -> None:
    queue: asyncio.Queue[tuple[FilePlan, int]] = asyncio.Queue()
    # One window per client (so per run): what a cut taught holds for the next study too.
    window = client.chunk_window(parallel)
    for plan in plans:
        for index in plan.missing:
            queue.put_nowait((plan, index))

    async def worker() -> None:
        while True:
            try:
                plan, index = queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            await _send_one(
                client, upload_id, upload_token, chunk_size, plan, index, on_bytes, window
            )

    try:
        async with asyncio.TaskGroup() as group:
            for _ in range(max(1, min(parallel, queue.qsize()))):
                group.create_task(worker())
    except BaseExceptionGroup as group_error:
        # Report the cause, not the group: the first failure cancelled the other workers.
        first = group_error.exceptions[0]
        while isinstance(first, BaseExceptionGroup):
            first = first.exceptions[0]
        raise first from None


async def _send_one(
    client: GatewayClient,
    upload_id: str,
    upload_token: str | None,
    chunk_size: int,
    plan: FilePlan,
    index: int,
    on_bytes: Callable[[int], None] | None,
    window: InFlightWindow | None = None,
) -> None:
    for attempt in range(CHECKSUM_RETRIES):
        data, md5 = await asyncio.to_thread(read_chunk, plan.path, index, chunk_size)
        try:
            await client.put_chunk(
                upload_id, plan.file_id, index, data, md5, upload_token, on_bytes, window
            )
            return
        except ApiError as error:
            if error.code == "checksum_mismatch" and attempt + 1 < CHECKSUM_RETRIES:
                # Bytes damaged on the way (or a read raced a writer): read and send again.
                if on_bytes is not None:
                    on_bytes(-len(data))
                client.stats.resent += len(data)
                continue
            if error.code == "chunk_conflict":
                raise LocalFileChanged(
                    f"the server holds other bytes for chunk {index} of {plan.path.name}: "
                    "the file changed since the upload started"
                ) from error
            if error.code == "upload_not_receiving":
                raise UploadClosed(error.detail) from error
            if error.status in (404, 410):
                raise UploadGone(error.detail) from error
            raise
