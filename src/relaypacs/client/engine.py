"""Send the missing chunks of one upload session, several at a time.

Chunks go out in file order (so reads stay sequential) from ``parallel`` workers sharing one
connection pool. Each chunk is read and hashed in a thread; the request itself is retried by
:class:`~relaypacs.client.api.GatewayClient` until it lands or the run gives up.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from relaypacs.client.api import (
    ENDED_UPLOAD_TOKEN_CODES,
    ApiError,
    ClientError,
    GatewayClient,
    InFlightWindow,
    content_md5,
)

CHECKSUM_RETRIES = 3
#: New upload tokens one chunk may ask for: a token refused again at once is not a sign-out.
TOKEN_RENEWALS = 3


class UploadGone(ClientError):
    """The session no longer takes chunks (expired, cancelled, unknown): start a new one."""


class UploadClosed(ClientError):
    """The session stopped taking chunks because it was completed (or cancelled) meanwhile."""


class LocalFileChanged(ClientError):
    """A local file changed since the scan (its size or modification time differ when a chunk
    is read), or the server holds other bytes for a chunk than the file has now."""


class UploadToken:
    """The upload's own token, shared by the workers sending its chunks.

    The gateway ends it when its owner signs out everywhere or changes the password; the upload
    goes on. Then one worker asks for a new token with the sign-in (the others wait and take
    it) and the chunks the gateway already holds are not sent again. Without a sign-in that is
    :class:`~relaypacs.client.api.NotSignedIn`: the run stops, and after `relaypacs login` the
    same command resumes where it stopped.
    """

    def __init__(
        self,
        client: GatewayClient,
        upload_id: str,
        value: str | None,
        on_renewed: Callable[[str], None] | None = None,
    ) -> None:
        self.client = client
        self.upload_id = upload_id
        self.value = value
        self._on_renewed = on_renewed
        self._lock = asyncio.Lock()

    async def renew(self, rejected: str | None) -> str | None:
        """A token to use instead of ``rejected`` (a new one, unless another worker got it)."""
        async with self._lock:
            if self.value != rejected:
                return self.value
            try:
                issued = await self.client.renew_upload_token(self.upload_id)
            except ApiError as error:
                if error.status in (404, 410):
                    raise UploadGone(error.detail) from error
                raise
            self.value = str(issued["upload_token"])
            if self._on_renewed is not None:
                self._on_renewed(self.value)
            return self.value

    async def renew_if_ended(self) -> None:
        """Renew now when the gateway already said this token ended (e.g. to a status call),
        rather than after every chunk in flight was refused with it."""
        if self.value is not None and self.client.upload_token_ended(self.value):
            await self.renew(self.value)


@dataclass(frozen=True)
class FilePlan:
    file_id: str
    path: Path
    size: int
    missing: list[int]
    #: (size, modification time in ns) of the file when it was scanned; None for a file that
    #: is the uploader's own copy (a ZIP member unpacked to the spool).
    scanned: tuple[int, int] | None = None


def read_chunk(
    path: Path, index: int, chunk_size: int, scanned: tuple[int, int] | None = None
) -> tuple[bytes, str]:
    """One chunk of ``path``; :class:`LocalFileChanged` when the file is no longer the one
    ``scanned``: a session must never be completed from a mix of two versions of a file."""
    with path.open("rb") as f:
        f.seek(index * chunk_size)
        data = f.read(chunk_size)
        if scanned is not None:
            # Looked at after the read, on the open file: a write that landed before or during
            # the read shows here, and one landing later does not touch the bytes we hold.
            stat = os.fstat(f.fileno())
            if (stat.st_size, stat.st_mtime_ns) != scanned:
                raise LocalFileChanged(
                    f"{path.name} changed while it was being uploaded (its size or modification "
                    "time differ from the scan): the upload was not completed"
                )
    return data, content_md5(data)


async def send_chunks(
    client: GatewayClient,
    upload_id: str,
    upload_token: UploadToken | str | None,
    chunk_size: int,
    plans: list[FilePlan],
    parallel: int = 4,
    on_bytes: Callable[[int], None] | None = None,
) -> None:
    token = (
        upload_token
        if isinstance(upload_token, UploadToken)
        else UploadToken(client, upload_id, upload_token)
    )
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
            await _send_one(client, upload_id, token, chunk_size, plan, index, on_bytes, window)

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
    upload_token: UploadToken,
    chunk_size: int,
    plan: FilePlan,
    index: int,
    on_bytes: Callable[[int], None] | None,
    window: InFlightWindow | None = None,
) -> None:
    checksum_failures = renewals = 0
    data, md5 = await asyncio.to_thread(read_chunk, plan.path, index, chunk_size, plan.scanned)
    while True:
        token = upload_token.value
        try:
            await client.put_chunk(
                upload_id, plan.file_id, index, data, md5, token, on_bytes, window
            )
            return
        except ApiError as error:
            if error.code == "checksum_mismatch" and checksum_failures + 1 < CHECKSUM_RETRIES:
                # Bytes damaged on the way (or a read raced a writer): read and send again.
                checksum_failures += 1
                if on_bytes is not None:
                    on_bytes(-len(data))
                client.stats.resent += len(data)
                data, md5 = await asyncio.to_thread(
                    read_chunk, plan.path, index, chunk_size, plan.scanned
                )
                continue
            if (
                token is not None
                and error.code in ENDED_UPLOAD_TOKEN_CODES
                and renewals < TOKEN_RENEWALS
            ):
                renewals += 1
                await upload_token.renew(token)
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
