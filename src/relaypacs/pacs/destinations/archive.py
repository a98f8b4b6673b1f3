"""The local archive: DICOM files under a directory, by study and series.

The embedded default when no PACS is configured, so that one `relaypacs serve` runs the whole
product: ``<root>/<StudyInstanceUID>/<SeriesInstanceUID>/<SOPInstanceUID>.dcm``. Each file is
written to a temporary name, fsync'd and renamed, so the archive never shows a partial file.
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
from collections.abc import Sequence
from pathlib import Path
from typing import BinaryIO

from anyio import to_thread

from relaypacs.pacs.destination import InstanceOutcome, InstanceResult, StowInstance, StowResult
from relaypacs.pacs.exceptions import DestinationUnavailable, InstanceIntegrityError

# PS3.5 9.1: digits and dots, at most 64 characters; anything else never becomes a path.
_UID = re.compile(r"^[0-9]+(\.[0-9]+)*$")
_WRITE_BATCH = 1024 * 1024


class ArchiveDestination:
    def __init__(self, root: Path, *, name: str = "archive") -> None:
        self.root = root
        self._name = name

    @property
    def name(self) -> str:
        return self._name

    @property
    def kind(self) -> str:
        return "archive"

    def path_of(self, instance: StowInstance) -> Path:
        return (
            self.root
            / instance.study_instance_uid
            / instance.series_instance_uid
            / f"{instance.sop_instance_uid}.dcm"
        )

    async def store_instances(self, instances: Sequence[StowInstance]) -> StowResult:
        results: list[InstanceResult] = []
        for instance in instances:
            uids = (
                instance.study_instance_uid,
                instance.series_instance_uid,
                instance.sop_instance_uid,
            )
            if not all(len(uid) <= 64 and _UID.match(uid) for uid in uids):
                results.append(
                    InstanceResult(
                        instance.sop_instance_uid,
                        InstanceOutcome.refused,
                        reason="a UID is not a valid DICOM UID",
                    )
                )
                continue
            try:
                await self._write(instance)
            except OSError as exc:
                raise DestinationUnavailable(
                    f"archive write failed ({type(exc).__name__})"
                ) from exc
            results.append(InstanceResult(instance.sop_instance_uid, InstanceOutcome.stored))
        return StowResult(instances=results)

    async def _write(self, instance: StowInstance) -> None:
        final = self.path_of(instance)
        temporary = final.with_name(f".{final.name}.{secrets.token_hex(6)}.part")
        await to_thread.run_sync(lambda: final.parent.mkdir(parents=True, exist_ok=True))
        handle: BinaryIO = await to_thread.run_sync(temporary.open, "wb")
        digest = hashlib.sha256()
        size = 0
        pending: list[bytes] = []
        pending_size = 0

        def write(data: bytes) -> None:
            digest.update(data)
            handle.write(data)

        try:
            async for piece in instance.open():
                size += len(piece)
                pending.append(piece)
                pending_size += len(piece)
                if pending_size >= _WRITE_BATCH:
                    data = b"".join(pending)
                    pending.clear()
                    pending_size = 0
                    await to_thread.run_sync(write, data)
            await to_thread.run_sync(write, b"".join(pending))
            if size != instance.size or (
                instance.sha256 is not None and digest.hexdigest() != instance.sha256
            ):
                raise InstanceIntegrityError(
                    instance.sop_instance_uid,
                    "the stored instance does not match its recorded size or SHA-256",
                )
            await to_thread.run_sync(_finish, handle, temporary, final)
        except BaseException:
            await to_thread.run_sync(_abandon, handle, temporary)
            raise

    async def count_instances(self, study_instance_uid: str) -> int:
        if not _UID.match(study_instance_uid):
            return 0
        study = self.root / study_instance_uid
        return await to_thread.run_sync(lambda: sum(1 for _ in study.glob("*/*.dcm")))

    async def ping(self) -> None:
        def check() -> None:
            self.root.mkdir(parents=True, exist_ok=True)
            if not os.access(self.root, os.W_OK):
                raise DestinationUnavailable("the archive directory is not writable")

        try:
            await to_thread.run_sync(check)
        except OSError as exc:
            raise DestinationUnavailable(f"archive unusable ({type(exc).__name__})") from exc

    async def close(self) -> None:
        return None


def _finish(handle: BinaryIO, temporary: Path, final: Path) -> None:
    handle.flush()
    os.fsync(handle.fileno())
    handle.close()
    os.replace(temporary, final)
    directory = os.open(final.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def _abandon(handle: BinaryIO, temporary: Path) -> None:
    handle.close()
    temporary.unlink(missing_ok=True)
