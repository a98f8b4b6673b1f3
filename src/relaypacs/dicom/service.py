"""Validate an assembled upload file: one DICOM instance, a DICOMDIR, a ZIP of them, or junk.

Blocking work (pydicom, unzipping, hashing) runs in worker threads; the store calls are async.
The result lists every instance found and, per file or ZIP entry, why anything was refused.
"""

from __future__ import annotations

import uuid
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from anyio import to_thread

from relaypacs.dicom.archives import (
    ArchiveRefused,
    ZipLimits,
    entry_problem,
    extract_entry,
    is_ignorable,
    looks_like_zip,
    open_archive,
)
from relaypacs.dicom.validation import Inspection, InstanceHeader, Verdict, inspect_instance
from relaypacs.uploads.store import ChunkStore, StagingArea, instance_key


@dataclass(frozen=True)
class FoundInstance:
    instance_id: uuid.UUID
    header: InstanceHeader
    entry_name: str | None
    size: int
    sha256: str
    store_key: str


@dataclass
class FileValidation:
    instances: list[FoundInstance] = field(default_factory=list)
    # [{"entry": name | None, "status": "invalid" | "skipped", "reason": str}]
    problems: list[dict[str, Any]] = field(default_factory=list)
    skipped: int = 0

    def refuse(self, entry: str | None, reason: str) -> None:
        self.problems.append({"entry": entry, "status": "invalid", "reason": reason})

    def skip(self, entry: str | None, reason: str) -> None:
        self.skipped += 1
        self.problems.append({"entry": entry, "status": "skipped", "reason": reason})


def inspect_plain(path: Path) -> Inspection | None:
    """Blocking: :func:`inspect_instance` of a plain file, ``None`` for a ZIP archive.

    Separate from :func:`validate_inspected` so that a caller already in a worker thread (the
    assembly of a file from local chunks) inspects in the same hop.
    """
    if looks_like_zip(path):
        return None
    return inspect_instance(path)


async def validate_inspected(
    inspection: Inspection | None,
    *,
    store: ChunkStore,
    staging: StagingArea,
    path: Path,
    upload_id: uuid.UUID,
    stored_key: str,
    size: int,
    sha256: str,
    limits: ZipLimits,
) -> FileValidation:
    """Validate the assembled file at ``path`` (already stored under ``stored_key``), given
    :func:`inspect_plain`'s answer for it.

    A plain instance is recorded with the file's own key; each valid ZIP entry is stored as its
    own instance object.
    """
    result = FileValidation()
    if inspection is None:
        await _validate_archive(result, store, staging, path, upload_id, limits)
        return result
    if inspection.verdict is Verdict.instance:
        assert inspection.header is not None
        result.instances.append(
            FoundInstance(uuid.uuid4(), inspection.header, None, size, sha256, stored_key)
        )
    elif inspection.verdict is Verdict.skipped:
        result.skip(None, inspection.reason or "skipped")
    else:
        result.refuse(None, inspection.reason or "not a valid DICOM instance")
    return result


async def _validate_archive(
    result: FileValidation,
    store: ChunkStore,
    staging: StagingArea,
    path: Path,
    upload_id: uuid.UUID,
    limits: ZipLimits,
) -> None:
    try:
        archive, entries = await to_thread.run_sync(open_archive, path, limits)
    except ArchiveRefused as exc:
        result.refuse(None, str(exc))
        return
    try:
        for info in entries:
            await _validate_entry(result, store, staging, archive, info, upload_id, limits)
    finally:
        archive.close()


async def _validate_entry(
    result: FileValidation,
    store: ChunkStore,
    staging: StagingArea,
    archive: zipfile.ZipFile,
    info: zipfile.ZipInfo,
    upload_id: uuid.UUID,
    limits: ZipLimits,
) -> None:
    name = info.filename
    if is_ignorable(info):
        return
    problem = entry_problem(info, limits)
    if problem:
        result.refuse(name, problem)
        return
    target = staging.new_path(".entry")
    try:
        try:
            extracted = await to_thread.run_sync(extract_entry, archive, info, target)
        except ArchiveRefused as exc:
            result.refuse(name, str(exc))
            return
        inspection = await to_thread.run_sync(inspect_instance, target)
        if inspection.verdict is Verdict.skipped:
            result.skip(name, inspection.reason or "skipped")
            return
        if inspection.verdict is Verdict.invalid:
            result.refuse(name, inspection.reason or "not a valid DICOM instance")
            return
        assert inspection.header is not None
        instance_id = uuid.uuid4()
        key = instance_key(upload_id, instance_id)
        await store.put_file(key, target)
        result.instances.append(
            FoundInstance(
                instance_id, inspection.header, name, extracted.size, extracted.sha256, key
            )
        )
    finally:
        await to_thread.run_sync(lambda: target.unlink(missing_ok=True))
