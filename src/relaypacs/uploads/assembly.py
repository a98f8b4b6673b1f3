"""Assembly and validation of an upload's files, as early as each file allows.

Each file is assembled and validated as soon as its last chunk is stored (the upload's
``uploads.assemble_ready`` job, enqueued by the chunk PUT that completed a file: see
:func:`relaypacs.uploads.overlap.enqueue_complete_files`), while the rest of the study is
still arriving; ``complete`` then leaves only the files that are not done yet to the
``uploads.assemble`` job, which records the upload's outcome (``validated`` or ``rejected``) and
hands it to forwarding at once. Nothing is sent to a PACS before ``complete`` unless the operator
turned on ``RELAYPACS_FORWARD_WHILE_RECEIVING``: then each recorded round also starts the
``pacs.forward_ready`` job (:mod:`relaypacs.pacs.early`), and the ``uploads.assemble`` job waits
until that job has stopped sending, so that what it decides below is final.

For each file: stream its chunks in order into one local temporary (computing SHA-256 and size,
never holding more than one block in memory), check the size, validate with pydicom, store the
instance objects, and record the instances and the file's outcome in one transaction. A file
that is recorded is never processed again, so a job may run twice (a worker can die after the
work and before marking it done) and the early and the final job may meet on one file: the
first to record wins, the other discards its work.

Two files holding one SOP Instance UID: the file earlier in the upload keeps it. An early job
leaves a file that collides with what is recorded to the final job, which decides by position,
except that a copy already sent to the PACS stays: the PACS holds those bytes.
"""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import structlog
from anyio import to_thread
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from relaypacs.db.base import utcnow
from relaypacs.dicom.archives import ZipLimits
from relaypacs.dicom.models import DicomInstance, ForwardStatus
from relaypacs.dicom.service import (
    FileValidation,
    FoundInstance,
    inspect_plain,
    validate_inspected,
)
from relaypacs.dicom.validation import Inspection
from relaypacs.operations import metrics
from relaypacs.reports import service as reports_service
from relaypacs.uploads import repository, service, store
from relaypacs.uploads.models import FileStatus, Upload, UploadFile, UploadState
from relaypacs.uploads.overlap import enqueue_forward_ready
from relaypacs.uploads.store import LOCAL_READ_BYTES, ChunkStore, StoreUnavailable

log = structlog.get_logger(__name__)


class AssemblyError(Exception):
    """The stored chunks do not add up to the declared file (should never happen)."""


#: Upload states in which a file may be assembled ahead of ``complete``.
_EARLY_STATES = frozenset({UploadState.created, UploadState.receiving})

_Outcome = tuple[UploadFile, FileValidation, str, int]


async def assemble_upload(
    sessionmaker: async_sessionmaker[AsyncSession],
    chunk_store: ChunkStore,
    upload_id: uuid.UUID,
    *,
    limits: ZipLimits,
) -> UploadState | None:
    """The ``uploads.assemble`` job: the files not assembled yet, then the upload's outcome."""
    async with sessionmaker() as session:
        upload = await repository.get_upload(session, upload_id)
        if upload is None:
            return None
        if upload.state is not UploadState.assembling:
            if upload.state not in (UploadState.created, UploadState.receiving):
                # A rerun after the outcome was committed: finish the clean-up it may have missed.
                await _delete_unused_chunks(
                    chunk_store, upload_id, await _files(sessionmaker, upload_id)
                )
            return upload.state
        files = await repository.list_files(session, upload_id)
        pending = [f for f in files if f.status is FileStatus.pending]
        chunks = await repository.list_chunks(session, upload_id, [f.id for f in pending])
        await session.commit()  # release the connection (and SQLite's lock) during the work

    outcomes: list[_Outcome] = []
    for start in range(0, len(pending), EARLY_ROUND_FILES):
        group = pending[start : start + EARLY_ROUND_FILES]
        # Files an early job recorded meanwhile are skipped (one look per group, not per file).
        still = await _still_pending(sessionmaker, upload_id, [f.id for f in group])
        await _assemble_each(
            chunk_store, upload, [f for f in group if f.id in still], chunks, limits, into=outcomes
        )

    async with sessionmaker() as session:
        locked = await repository.get_upload(session, upload_id, lock="update")
        if locked is None or locked.state is not UploadState.assembling:
            return locked.state if locked else None
        skipped: list[_Outcome] = []
        state = await _record_outcome(session, locked, outcomes, skipped)
        await session.commit()
    for outcome in skipped:
        await _discard_objects(sessionmaker, chunk_store, upload_id, outcome)
    if state is UploadState.rejected:
        metrics.record_upload_finished(state.value)
    await _delete_unused_chunks(chunk_store, upload_id, await _files(sessionmaker, upload_id))
    log.info(
        "upload_assembled",
        upload_id=str(upload_id),
        state=state.value,
        files=len(files),
        assembled_now=len(outcomes),
    )
    return state


async def _files(
    sessionmaker: async_sessionmaker[AsyncSession], upload_id: uuid.UUID
) -> list[UploadFile]:
    async with sessionmaker() as session:
        files = await repository.list_files(session, upload_id)
        await session.commit()
    return files


async def _delete_unused_chunks(
    chunk_store: ChunkStore, upload_id: uuid.UUID, files: list[UploadFile]
) -> None:
    """The chunks of each file, unless its instance is stored as that very chunk."""
    for upload_file in files:
        prefix = _file_chunks_prefix(upload_id, upload_file.id)
        if upload_file.store_key is None or not upload_file.store_key.startswith(prefix):
            await chunk_store.delete_prefix(prefix)


def _file_chunks_prefix(upload_id: uuid.UUID, file_id: uuid.UUID) -> str:
    return store.chunk_key(upload_id, file_id, 0).rsplit("/", 1)[0] + "/"


async def _still_pending(
    sessionmaker: async_sessionmaker[AsyncSession],
    upload_id: uuid.UUID,
    file_ids: list[uuid.UUID],
) -> set[uuid.UUID]:
    async with sessionmaker() as session:
        pending = await repository.pending_file_ids(session, upload_id, file_ids)
        await session.commit()
    return pending


#: Files of one upload assembled side by side. Each spends most of its time waiting (store
#: reads, thread hand-offs, the database), so a few at once keep the loop and the threads busy;
#: few enough that memory stays at a few read blocks per file.
ASSEMBLY_CONCURRENCY = 4


async def _assemble_each(
    chunk_store: ChunkStore,
    upload: Upload,
    files: list[UploadFile],
    chunks: dict[uuid.UUID, list[tuple[int, int, str]]],
    limits: ZipLimits,
    *,
    own_key: bool = False,
    into: list[_Outcome],
) -> None:
    """:func:`_assemble_file` for each file, :data:`ASSEMBLY_CONCURRENCY` at a time.

    Each outcome lands in ``into`` as soon as it is ready, so a caller cut short (an error, a
    lost lease) still knows what was stored; the first error cancels the rest.
    """
    slots = asyncio.Semaphore(ASSEMBLY_CONCURRENCY)

    async def one(upload_file: UploadFile) -> None:
        async with slots:
            into.append(
                await _assemble_file(
                    chunk_store,
                    upload,
                    upload_file,
                    chunks[upload_file.id],
                    limits,
                    own_key=own_key,
                )
            )

    try:
        async with asyncio.TaskGroup() as group:
            for upload_file in files:
                group.create_task(one(upload_file))
    except BaseExceptionGroup as errors:
        # Callers handle one error, as when files were assembled one after the other.
        raise errors.exceptions[0] from None
    finally:
        into.sort(key=lambda outcome: outcome[0].position)


#: Files assembled per round of :func:`assemble_ready_files` (recorded in one transaction).
EARLY_ROUND_FILES = 16
#: How long :func:`assemble_ready_files` looks for more ready files before it ends, and how
#: often. A file completed just as it ends waits for ``complete``: slower, never wrong.
EARLY_LINGER_SECONDS = 1.0
EARLY_POLL_SECONDS = 0.2
#: How long a round of fewer than ``EARLY_ROUND_FILES`` may wait for more ready files. On a slow
#: link a file or two complete at a time, and each round has a fixed cost (its reads, its
#: transaction, the jobs it enqueues): a moment's wait makes rounds fuller and fewer.
EARLY_GATHER_SECONDS = 1.0


async def assemble_ready_files(
    sessionmaker: async_sessionmaker[AsyncSession],
    chunk_store: ChunkStore,
    upload_id: uuid.UUID,
    *,
    limits: ZipLimits,
) -> int:
    """The ``uploads.assemble_ready`` job: while the upload is still receiving, assemble the
    files whose chunks are all stored, a round of a few at a time, each round recorded in one
    transaction, until none is left. Returns how many files it recorded.

    One job per upload at a time, and few transactions per file: on SQLite every transaction
    takes the one write lock the chunk PUTs need too.
    """
    recorded_files = 0
    deferred: set[uuid.UUID] = set()
    idle = 0.0
    gathering = 0.0
    while True:
        async with sessionmaker() as session:
            upload = await repository.get_upload(session, upload_id)
            if upload is None or upload.state not in _EARLY_STATES:
                # Completed meanwhile (the final job does the rest) or cancelled.
                await session.commit()
                return recorded_files
            ready = await repository.ready_files(
                session, upload_id, exclude=sorted(deferred), limit=EARLY_ROUND_FILES
            )
            chunks = await repository.list_chunks(session, upload_id, [f.id for f in ready])
            await session.commit()
        if not ready:
            if idle >= EARLY_LINGER_SECONDS:
                return recorded_files
            # A file completed while this job runs adds no job of its own (the enqueue finds
            # this one unfinished): stay a moment, as the next file is usually on its way.
            await asyncio.sleep(EARLY_POLL_SECONDS)
            idle += EARLY_POLL_SECONDS
            continue
        idle = 0.0
        if len(ready) < EARLY_ROUND_FILES and gathering < EARLY_GATHER_SECONDS:
            await asyncio.sleep(EARLY_POLL_SECONDS)
            gathering += EARLY_POLL_SECONDS
            continue
        gathering = 0.0
        round_ = _EarlyRound()
        try:
            await _assemble_each(
                chunk_store, upload, ready, chunks, limits, own_key=True, into=round_.outcomes
            )
            await _record_round(sessionmaker, upload_id, upload, round_, deferred)
        except BaseException:
            # Cancelled (lease lost, worker stopping) or failed before the round was recorded:
            # what it stored under its own keys would otherwise stay until retention. Not when
            # the commit itself was interrupted: whether it landed is unknown, and the objects
            # of a landed round are in use.
            if not round_.committing:
                await asyncio.shield(_discard_unrecorded(sessionmaker, chunk_store, round_))
            raise
        await _discard_unrecorded(sessionmaker, chunk_store, round_)
        recorded_files += len(round_.kept)
        log.info("upload_files_assembled", upload_id=str(upload_id), files=len(round_.kept))


@dataclass
class _EarlyRound:
    """The files one early round assembled, and which of them it recorded."""

    outcomes: list[_Outcome] = field(default_factory=list)
    kept: list[_Outcome] = field(default_factory=list)
    committing: bool = False


async def _record_round(
    sessionmaker: async_sessionmaker[AsyncSession],
    upload_id: uuid.UUID,
    upload: Upload,
    round_: _EarlyRound,
    deferred: set[uuid.UUID],
) -> None:
    """Record the round's files that are still pending, if the upload still receives."""
    warnings = _warnings_of(upload, round_.outcomes)
    recorded: list[_Outcome] = []
    async with sessionmaker() as session:
        # Shared like a chunk insert (cancel and complete wait for it); exclusive only when
        # the upload's warnings change.
        locked = await repository.get_upload(
            session, upload_id, lock="update" if warnings else "share"
        )
        if locked is not None and locked.state in _EARLY_STATES:
            recorded = await _record_early(session, upload_id, round_.outcomes, deferred)
            if recorded and warnings:
                locked.warnings = merge_warnings(locked.warnings, _warnings_of(locked, recorded))
            if recorded:
                await enqueue_forward_ready(session, upload_id, locked.service_level)
        round_.committing = True
        await session.commit()
    round_.kept = recorded


async def _discard_unrecorded(
    sessionmaker: async_sessionmaker[AsyncSession],
    chunk_store: ChunkStore,
    round_: _EarlyRound,
) -> None:
    kept = {id(outcome) for outcome in round_.kept}
    for outcome in round_.outcomes:
        if id(outcome) not in kept:
            await _discard_objects(sessionmaker, chunk_store, outcome[0].upload_id, outcome)


async def _record_early(
    session: AsyncSession,
    upload_id: uuid.UUID,
    outcomes: list[_Outcome],
    deferred: set[uuid.UUID],
) -> list[_Outcome]:
    """Record the round's files that are still pending: their instances and outcome, in a few
    statements for the whole round (this runs while chunks arrive and compete for the
    database). A file holding an instance already recorded, or held twice, is left to the final
    job (added to ``deferred``): which copy stays depends on the files' positions."""
    current = await repository.get_files(session, upload_id, [o[0].id for o in outcomes])
    pending = [
        o for o in outcomes if o[0].id in current and current[o[0].id].status is FileStatus.pending
    ]
    uids = [found.header.sop_instance_uid for o in pending for found in o[1].instances]
    taken = await repository.existing_sop_instance_uids(session, upload_id, uids)
    recorded: list[_Outcome] = []
    rows: list[DicomInstance] = []
    for outcome in pending:
        upload_file = current[outcome[0].id]
        _, validation, sha256, _size = outcome
        file_uids = [found.header.sop_instance_uid for found in validation.instances]
        if len(set(file_uids)) != len(file_uids) or not taken.isdisjoint(file_uids):
            deferred.add(upload_file.id)
            continue
        taken.update(file_uids)
        rows.extend(_instance_row(upload_id, upload_file.id, f) for f in validation.instances)
        _set_file_outcome(upload_file, validation.instances, validation, sha256)
        recorded.append(outcome)
    await repository.add_instances(session, rows)
    return recorded


async def _discard_objects(
    sessionmaker: async_sessionmaker[AsyncSession],
    chunk_store: ChunkStore,
    upload_id: uuid.UUID,
    outcome: _Outcome,
) -> None:
    """Objects stored for an outcome that was not recorded (e.g. the upload was cancelled
    meanwhile). Its keys are its own; the check that no recorded instance uses one is a guard."""
    upload_file, validation, _, _ = outcome
    chunk_dir = _file_chunks_prefix(upload_id, upload_file.id)
    # A single-chunk file's instance is its chunk: never deleted here.
    keys = {f.store_key for f in validation.instances if not f.store_key.startswith(chunk_dir)}
    if not keys:
        return
    async with sessionmaker() as session:
        used = await repository.referenced_store_keys(session, upload_id, sorted(keys))
        await session.commit()
    try:
        for key in sorted(keys - used):
            await chunk_store.delete_prefix(key)
    except (StoreUnavailable, OSError):
        log.warning("upload_file_objects_left", file_id=str(upload_file.id))


async def _assemble_file(
    chunk_store: ChunkStore,
    upload: Upload,
    upload_file: UploadFile,
    chunks: list[tuple[int, int, str]],
    limits: ZipLimits,
    *,
    own_key: bool = False,
) -> tuple[UploadFile, FileValidation, str, int]:
    """``own_key``: store a plain instance under a key of this run's own (an early job that
    may lose the race to record the file must be able to delete what it stored without touching
    the file's key, which the winner may be using).

    A plain instance sent as one chunk is not copied: its chunk, stored durably and MD5-checked
    again here, is the instance's object (the forwarding stage checks its SHA-256 as it reads).
    """
    if [index for index, _, _ in chunks] != list(range(upload_file.chunk_count)):
        raise AssemblyError("chunk rows do not cover the file")
    single = upload_file.chunk_count == 1
    sources = _local_sources(chunk_store, upload.id, upload_file.id, chunks)
    # A single local chunk is read where it lies; anything else is assembled into a temporary.
    path = sources[0] if sources and single else chunk_store.staging.new_path(".assembled")
    temporary = path if not (sources and single) else None
    stored_own_key: str | None = None
    try:
        try:
            if sources is not None:
                sha256, size, inspection = await to_thread.run_sync(
                    _assemble_local, sources, chunks, temporary, upload_file.size
                )
            else:
                sha256, size = await _concatenate(
                    chunk_store, upload.id, upload_file.id, chunks, path
                )
                if size != upload_file.size:
                    raise AssemblyError("assembled size differs from the declared size")
                inspection = await to_thread.run_sync(inspect_plain, path)
            if single:
                key = store.chunk_key(upload.id, upload_file.id, 0)
            elif own_key:
                key = store.instance_key(upload.id, uuid.uuid4())
            else:
                key = store.file_key(upload.id, upload_file.id)
            validation = await validate_inspected(
                inspection,
                store=chunk_store,
                staging=chunk_store.staging,
                path=path,
                upload_id=upload.id,
                stored_key=key,
                size=size,
                sha256=sha256,
                limits=limits,
            )
            if not single and any(i.store_key == key for i in validation.instances):
                try:
                    await chunk_store.put_file(key, path)
                except BaseException:
                    if own_key:  # nobody else uses this key: do not leave what may be stored
                        await asyncio.shield(_forget_object(chunk_store, key))
                    raise
                if own_key:
                    stored_own_key = key
        finally:
            if temporary is not None:
                await to_thread.run_sync(lambda: temporary.unlink(missing_ok=True))
    except BaseException:
        # Cut short after storing (cancelled while removing the temporary): the caller never
        # gets this outcome, so nobody else would delete the object.
        if stored_own_key is not None:
            await asyncio.shield(_forget_object(chunk_store, stored_own_key))
        raise
    return upload_file, validation, sha256, size


def _local_sources(
    chunk_store: ChunkStore,
    upload_id: uuid.UUID,
    file_id: uuid.UUID,
    chunks: list[tuple[int, int, str]],
) -> list[Path] | None:
    """The chunks' local files, when the store keeps them on this machine."""
    paths = [
        chunk_store.local_path(store.chunk_key(upload_id, file_id, index)) for index, _, _ in chunks
    ]
    return [path for path in paths if path is not None] if None not in paths else None


def _assemble_local(
    sources: list[Path],
    chunks: list[tuple[int, int, str]],
    into: Path | None,
    expected_size: int,
) -> tuple[str, int, Inspection | None]:
    """Blocking: :func:`_concatenate` and the inspection, for chunks that are local files.

    One worker-thread hop per file instead of a few per block: under load each hop waits for
    the event loop and for the GIL, which cost several times the hashing itself (measured with
    the forwarding bench, bench/README.md). ``into`` is ``None`` for a single chunk, which is
    inspected in place (it is immutable once stored).
    """
    digest = hashlib.sha256()
    size = 0
    handle = into.open("wb") if into is not None else None
    try:
        for source, (index, chunk_size, chunk_md5) in zip(sources, chunks, strict=True):
            md5 = hashlib.md5(usedforsecurity=False)
            written = 0
            with source.open("rb") as chunk:
                while block := chunk.read(LOCAL_READ_BYTES):
                    digest.update(block)
                    md5.update(block)
                    if handle is not None:
                        handle.write(block)
                    written += len(block)
            # Re-verify: a chunk damaged at rest must not become part of a study.
            if written != chunk_size or md5.hexdigest() != chunk_md5:
                raise AssemblyError(f"stored chunk {index} does not match its checksum")
            size += written
    finally:
        if handle is not None:
            handle.close()
    if size != expected_size:
        raise AssemblyError("assembled size differs from the declared size")
    return digest.hexdigest(), size, inspect_plain(into or sources[0])


async def _forget_object(chunk_store: ChunkStore, key: str) -> None:
    try:
        await chunk_store.delete_prefix(key)
    except (StoreUnavailable, OSError):
        log.warning("upload_file_objects_left")


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
    outcomes: list[_Outcome],
    skipped: list[_Outcome],
) -> UploadState:
    """The files assembled now, then the upload's outcome (files recorded early stay)."""
    files = {f.id: f for f in await repository.list_files(session, upload.id)}
    recorded = await repository.list_instances(session, upload.id)
    # SOP Instance UID -> the row already recorded (by an early job) and its file's position.
    holders = {row.sop_instance_uid: row for row in recorded}
    rows: list[DicomInstance] = []
    for detached, validation, sha256, _size in sorted(outcomes, key=lambda o: o[0].position):
        upload_file = files[detached.id]
        if upload_file.status is not FileStatus.pending:
            skipped.append((upload_file, validation, sha256, _size))
            continue  # recorded by its early job after this job read it
        kept: list[FoundInstance] = []
        for found in validation.instances:
            uid = found.header.sop_instance_uid
            holder = holders.get(uid)
            if holder is not None and (
                files[holder.file_id].position <= upload_file.position or _sent(holder)
            ):
                validation.refuse(found.entry_name, DUPLICATE)
                continue
            if holder is not None:
                # The copy in this earlier file stays: the later file's row gives way.
                await _give_way(session, files[holder.file_id], holder)
            new_row = _instance_row(upload.id, upload_file.id, found)
            holders[uid] = new_row
            kept.append(found)
            rows.append(new_row)
        _set_file_outcome(upload_file, kept, validation, sha256)
    await repository.add_instances(session, rows)
    now = utcnow()
    upload.instance_count = await repository.count_instances(session, upload.id)
    upload.warnings = merge_warnings(upload.warnings, _warnings_of(upload, outcomes))
    upload.updated_at = now
    if upload.instance_count:
        upload.state = UploadState.validated
        await repository.add_event(
            session, upload.id, UploadState.validated, f"{upload.instance_count} instance(s)"
        )
        await service.enqueue_forwarding(session, upload)
    else:
        upload.state = UploadState.rejected
        upload.failure_reason = "No valid DICOM instance in the upload"
        await repository.add_event(
            session, upload.id, UploadState.rejected, "no valid DICOM instance"
        )
        await reports_service.on_upload_failed(session, upload, [upload.failure_reason])
    return upload.state


DUPLICATE = "duplicate SOP Instance UID in this upload"


def _sent(row: DicomInstance) -> bool:
    """Whether early forwarding sent this copy (stored, refused, or tried without an answer)."""
    return row.forward_status is not ForwardStatus.pending or row.forward_reason is not None


async def _give_way(session: AsyncSession, upload_file: UploadFile, row: DicomInstance) -> None:
    """Refuse ``row`` (recorded early for ``upload_file``) as the duplicate of an earlier file's."""
    await repository.delete_instance(session, row)
    problems = [
        *upload_file.problems,
        {"entry": row.entry_name, "status": "invalid", "reason": DUPLICATE},
    ]
    upload_file.problems = problems
    remaining = await repository.count_file_instances(session, upload_file.id)
    upload_file.status = FileStatus.partial if remaining else FileStatus.invalid
    if upload_file.store_key == row.store_key:
        upload_file.store_key = None


def _set_file_outcome(
    upload_file: UploadFile,
    kept: list[FoundInstance],
    validation: FileValidation,
    sha256: str,
) -> None:
    upload_file.sha256 = sha256
    upload_file.store_key = next((f.store_key for f in kept if f.entry_name is None), None)
    upload_file.problems = list(validation.problems)
    upload_file.status = _file_status(kept, validation)


def _warnings_of(upload: Upload, outcomes: list[_Outcome]) -> list[dict[str, object]]:
    headers = [
        (
            upload_file.name,
            found.entry_name,
            found.header.patient_name,
            found.header.modality,
            found.header.study_date,
        )
        for upload_file, validation, _, _ in outcomes
        for found in validation.instances
    ]
    return service.header_warnings(upload, headers)


def merge_warnings(
    earlier: list[dict[str, object]], later: list[dict[str, object]]
) -> list[dict[str, object]]:
    """Header warnings of two sets of files as one list (counts added, files listed up to 20)."""
    merged: dict[object, dict[str, object]] = {w["code"]: dict(w) for w in earlier}
    for warning in later:
        into = merged.get(warning["code"])
        if into is None:
            merged[warning["code"]] = dict(warning)
            continue
        into["instances"] = int(str(into["instances"])) + int(str(warning["instances"]))
        files = [*list(into["files"]), *list(warning["files"])]  # type: ignore[call-overload]
        into["files"] = files[:20]
    return list(merged.values())


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
