"""Assembly and validation of a completed upload (run by the ``uploads.assemble`` job).

For each file: stream its chunks in order into one local temporary (computing SHA-256 and size,
never holding more than one block in memory), check the size, validate with pydicom, store the
instance objects, and finally record instances, per-file outcomes and the new state in one
transaction. The job may run twice (a worker can die after the work and before marking it
done): a rerun replaces the instance rows, and a finished upload is left alone.
"""

from __future__ import annotations

import hashlib
import uuid
from pathlib import Path

import structlog
from anyio import to_thread
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from relaypacs.db.base import utcnow
from relaypacs.dicom.archives import ZipLimits
from relaypacs.dicom.models import DicomInstance, ForwardStatus
from relaypacs.dicom.service import FileValidation, FoundInstance, validate_file
from relaypacs.operations import metrics
from relaypacs.uploads import repository, service, store
from relaypacs.uploads.models import FileStatus, Upload, UploadFile, UploadState
from relaypacs.uploads.store import ChunkStore

log = structlog.get_logger(__name__)


class AssemblyError(Exception):
    """The stored chunks do not add up to the declared file (should never happen)."""


async def assemble_upload(
    sessionmaker: async_sessionmaker[AsyncSession],
    chunk_store: ChunkStore,
    upload_id: uuid.UUID,
    *,
    limits: ZipLimits,
) -> UploadState | None:
    async with sessionmaker() as session:
        upload = await repository.get_upload(session, upload_id)
        if upload is None:
            return None
        if upload.state is not UploadState.assembling:
            if upload.state not in (UploadState.created, UploadState.receiving):
                # A rerun after the outcome was committed: finish the clean-up it may have missed.
                await chunk_store.delete_prefix(store.chunks_prefix(upload_id))
            return upload.state
        files = await repository.list_files(session, upload_id)
        chunks = {f.id: await repository.list_chunks(session, f.id) for f in files}
        await session.commit()  # release the connection (and SQLite's lock) during the work

    outcomes: list[tuple[UploadFile, FileValidation, str, int]] = []
    for upload_file in files:
        outcomes.append(
            await _assemble_file(chunk_store, upload, upload_file, chunks[upload_file.id], limits)
        )

    async with sessionmaker() as session:
        locked = await repository.get_upload(session, upload_id, lock="update")
        if locked is None or locked.state is not UploadState.assembling:
            return locked.state if locked else None
        state = await _record_outcome(session, locked, outcomes)
        await session.commit()
    if state is UploadState.rejected:
        metrics.record_upload_finished(state.value)
    await chunk_store.delete_prefix(store.chunks_prefix(upload_id))
    log.info("upload_assembled", upload_id=str(upload_id), state=state.value)
    return state


async def _assemble_file(
    chunk_store: ChunkStore,
    upload: Upload,
    upload_file: UploadFile,
    chunks: list[tuple[int, int, str]],
    limits: ZipLimits,
) -> tuple[UploadFile, FileValidation, str, int]:
    if [index for index, _, _ in chunks] != list(range(upload_file.chunk_count)):
        raise AssemblyError("chunk rows do not cover the file")
    path = chunk_store.staging.new_path(".assembled")
    try:
        sha256, size = await _concatenate(chunk_store, upload.id, upload_file.id, chunks, path)
        if size != upload_file.size:
            raise AssemblyError("assembled size differs from the declared size")
        key = store.file_key(upload.id, upload_file.id)
        validation = await validate_file(
            store=chunk_store,
            staging=chunk_store.staging,
            path=path,
            upload_id=upload.id,
            stored_key=key,
            size=size,
            sha256=sha256,
            limits=limits,
        )
        if any(instance.store_key == key for instance in validation.instances):
            await chunk_store.put_file(key, path)
        return upload_file, validation, sha256, size
    finally:
        await to_thread.run_sync(lambda: path.unlink(missing_ok=True))


async def _concatenate(
    chunk_store: ChunkStore,
    upload_id: uuid.UUID,
    file_id: uuid.UUID,
    chunks: list[tuple[int, int, str]],
    path: Path,
) -> tuple[str, int]:
    digest = hashlib.sha256()
    size = 0
    handle = await to_thread.run_sync(path.open, "wb")
    try:
        for index, chunk_size, chunk_md5 in chunks:
            md5 = hashlib.md5(usedforsecurity=False)
            written = 0
            async for block in chunk_store.read(store.chunk_key(upload_id, file_id, index)):
                await to_thread.run_sync(_append, handle, digest, md5, block)
                written += len(block)
            # Re-verify: a chunk damaged at rest must not become part of a study.
            if written != chunk_size or md5.hexdigest() != chunk_md5:
                raise AssemblyError(f"stored chunk {index} does not match its checksum")
            size += written
    finally:
        await to_thread.run_sync(handle.close)
    return digest.hexdigest(), size


def _append(handle: object, digest: object, md5: object, block: bytes) -> None:
    digest.update(block)  # type: ignore[attr-defined]
    md5.update(block)  # type: ignore[attr-defined]
    handle.write(block)  # type: ignore[attr-defined]


async def _record_outcome(
    session: AsyncSession,
    upload: Upload,
    outcomes: list[tuple[UploadFile, FileValidation, str, int]],
) -> UploadState:
    await repository.delete_instances(session, upload.id)
    seen: set[str] = set()
    rows: list[DicomInstance] = []
    headers: list[tuple[str, str | None, object, object, object]] = []
    for detached, validation, sha256, _size in outcomes:
        upload_file = await repository.get_file(session, upload.id, detached.id)
        assert upload_file is not None
        kept: list[FoundInstance] = []
        for found in validation.instances:
            if found.header.sop_instance_uid in seen:
                validation.refuse(found.entry_name, "duplicate SOP Instance UID in this upload")
                continue
            seen.add(found.header.sop_instance_uid)
            kept.append(found)
        rows.extend(_instance_row(upload.id, upload_file.id, found) for found in kept)
        headers.extend(
            (
                upload_file.name,
                found.entry_name,
                found.header.patient_name,
                found.header.modality,
                found.header.study_date,
            )
            for found in kept
        )
        upload_file.sha256 = sha256
        upload_file.store_key = next((f.store_key for f in kept if f.entry_name is None), None)
        upload_file.problems = validation.problems
        upload_file.status = _file_status(kept, validation)
    await repository.add_instances(session, rows)
    now = utcnow()
    upload.instance_count = len(rows)
    upload.warnings = service.header_warnings(upload, headers)
    upload.updated_at = now
    if rows:
        upload.state = UploadState.validated
        await repository.add_event(
            session, upload.id, UploadState.validated, f"{len(rows)} instance(s)"
        )
        await service.enqueue_forwarding(session, upload)
    else:
        upload.state = UploadState.rejected
        upload.failure_reason = "No valid DICOM instance in the upload"
        await repository.add_event(
            session, upload.id, UploadState.rejected, "no valid DICOM instance"
        )
    return upload.state


def _file_status(kept: list[FoundInstance], validation: FileValidation) -> FileStatus:
    refused = any(p["status"] == "invalid" for p in validation.problems)
    if kept:
        return FileStatus.partial if refused else FileStatus.valid
    if validation.skipped and not refused:
        return FileStatus.skipped
    return FileStatus.invalid


def _instance_row(upload_id: uuid.UUID, file_id: uuid.UUID, found: FoundInstance) -> DicomInstance:
    header = found.header
    return DicomInstance(
        id=found.instance_id,
        upload_id=upload_id,
        file_id=file_id,
        entry_name=found.entry_name,
        sop_class_uid=header.sop_class_uid,
        sop_instance_uid=header.sop_instance_uid,
        study_instance_uid=header.study_instance_uid,
        series_instance_uid=header.series_instance_uid,
        transfer_syntax_uid=header.transfer_syntax_uid,
        modality=header.modality,
        series_number=header.series_number,
        instance_number=header.instance_number,
        number_of_frames=header.number_of_frames,
        size=found.size,
        sha256=found.sha256,
        store_key=found.store_key,
        forward_status=ForwardStatus.pending,
        created_at=utcnow(),
    )
