"""Job handlers of the uploads domain: assembly + validation (per file as soon as it is
complete, then the rest after ``complete``), and the expiry sweep."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import timedelta
from typing import Any

import structlog
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from relaypacs.db.base import utcnow
from relaypacs.dicom.archives import ZipLimits
from relaypacs.jobs import service as jobs_service
from relaypacs.jobs.registry import (
    JobContext,
    PermanentFailure,
    RetryLater,
    job_handler,
    register_periodic,
)
from relaypacs.operations import metrics
from relaypacs.reports import service as reports_service
from relaypacs.uploads import repository, service
from relaypacs.uploads.assembly import AssemblyError, assemble_ready_files, assemble_upload
from relaypacs.uploads.models import FAILURE_REASON_LENGTH, UploadState
from relaypacs.uploads.overlap import ASSEMBLE_READY_JOB, FORWARD_READY_JOB
from relaypacs.uploads.store import StoreUnavailable

log = structlog.get_logger(__name__)

EXPIRY_SWEEP_EVERY = timedelta(minutes=10)
STALLED_ASSEMBLY_JOB = "uploads.stalled_assembly"
STALLED_ASSEMBLY_SWEEP_EVERY = timedelta(minutes=1)
_EARLY_SENDER_POLL_SECONDS = 0.1


@job_handler(service.ASSEMBLE_JOB)
async def assemble(ctx: JobContext, payload: dict[str, Any]) -> None:
    try:
        upload_id = uuid.UUID(str(payload["upload_id"]))
    except (KeyError, ValueError) as exc:
        raise PermanentFailure("payload without a valid upload_id") from exc
    settings = ctx.settings
    limits = ZipLimits(max_total_bytes=4 * settings.max_upload_bytes)
    await _wait_for_early_sender(ctx, upload_id)
    try:
        await assemble_upload(ctx.sessionmaker, ctx.resources.chunk_store, upload_id, limits=limits)
    except (StoreUnavailable, OSError) as exc:
        raise RetryLater(f"chunk store: {type(exc).__name__}") from exc
    except AssemblyError as exc:
        await _fail_assembly(ctx.sessionmaker, upload_id, str(exc))
        raise PermanentFailure(str(exc)) from exc


async def _fail_assembly(
    sessionmaker: async_sessionmaker[AsyncSession], upload_id: uuid.UUID, reason: str
) -> bool:
    """assembling → failed with the reason, and the uploader is told (an admin can requeue).
    False if the upload had left ``assembling`` already."""
    async with sessionmaker() as session:
        upload = await repository.get_upload(session, upload_id, lock="update")
        if upload is None or upload.state is not UploadState.assembling:
            await session.commit()
            return False
        upload.state = UploadState.failed
        upload.failure_reason = reason[:FAILURE_REASON_LENGTH]
        upload.updated_at = utcnow()
        await repository.add_event(session, upload_id, UploadState.failed, upload.failure_reason)
        await reports_service.on_upload_failed(session, upload, [reason])
        await session.commit()
    metrics.record_upload_finished(UploadState.failed.value)
    return True


async def _wait_for_early_sender(ctx: JobContext, upload_id: uuid.UUID) -> None:
    """Until the upload's early forwarding job is no longer running.

    It stops before its next batch once it sees the upload completed. Which copy of an instance
    held by two files stays depends on what already reached the PACS, so the outcome is decided
    only after it. A sender whose worker died counts as running until its lease ends.
    """
    deadline = time.monotonic() + ctx.settings.job_lease_seconds
    while True:
        async with ctx.sessionmaker() as session:
            sending = await jobs_service.is_running(session, f"{FORWARD_READY_JOB}:{upload_id}")
            await session.commit()
        if not sending:
            return
        if time.monotonic() >= deadline:
            raise RetryLater("instances are still being sent early")
        await asyncio.sleep(_EARLY_SENDER_POLL_SECONDS)


@job_handler(ASSEMBLE_READY_JOB)
async def assemble_ready(ctx: JobContext, payload: dict[str, Any]) -> None:
    """The files whose chunks are all stored, while the rest arrives (nothing is sent yet)."""
    try:
        upload_id = uuid.UUID(str(payload["upload_id"]))
    except (KeyError, ValueError) as exc:
        raise PermanentFailure("payload without a valid upload_id") from exc
    limits = ZipLimits(max_total_bytes=4 * ctx.settings.max_upload_bytes)
    try:
        await assemble_ready_files(
            ctx.sessionmaker, ctx.resources.chunk_store, upload_id, limits=limits
        )
    except (StoreUnavailable, OSError) as exc:
        raise RetryLater(f"chunk store: {type(exc).__name__}") from exc
    except AssemblyError as exc:
        # Left to the assembly after `complete`, which fails the upload with this reason.
        log.warning("upload_files_not_assembled", upload_id=str(upload_id), reason=str(exc))


@job_handler(service.EXPIRE_JOB)
async def expire(ctx: JobContext, payload: dict[str, Any]) -> None:
    """Expire unfinished sessions past 24 h, forget Idempotency-Keys past theirs, and free what
    cancelled/expired uploads stored."""
    async with ctx.sessionmaker() as session:
        expired = await service.expire_sessions(session, utcnow())
        forgotten = await service.forget_stale_idempotency_keys(session, utcnow())
        await session.commit()
    if expired:
        log.info("upload_sessions_expired", count=len(expired))
    if forgotten:
        log.info("upload_idempotency_keys_forgotten", count=forgotten)
    for _ in expired:
        metrics.record_upload_finished(UploadState.expired.value)
    async with ctx.sessionmaker() as session:
        for upload_id in await repository.unpurged_upload_ids(session, limit=500):
            await service.purge_stored_bytes(session, ctx.resources.chunk_store, upload_id)
            await session.commit()


register_periodic(service.EXPIRE_JOB, every=EXPIRY_SWEEP_EVERY)


@job_handler(STALLED_ASSEMBLY_JOB)
async def fail_stalled_assemblies(ctx: JobContext, payload: dict[str, Any]) -> None:
    """Fail (with the reason, and tell the uploader) every upload left ``assembling`` by an
    assembly job that gave up for good: its workers kept dying on it (a file that exhausts
    memory, say), or an unexpected error outlived the retries. Without this the study would
    show ``assembling`` for ever, and an admin's requeue would refuse it as not failed."""
    async with ctx.sessionmaker() as session:
        stalled = await repository.uploads_their_job_gave_up_on(
            session,
            states=(UploadState.assembling,),
            job_key=lambda upload_id: service.job_key(service.ASSEMBLE_JOB, upload_id),
        )
        await session.commit()
    for upload_id, error in stalled:
        if await _fail_assembly(ctx.sessionmaker, upload_id, f"assembly stopped: {error}"):
            log.warning("upload_assembly_stalled", upload_id=str(upload_id))


register_periodic(STALLED_ASSEMBLY_JOB, every=STALLED_ASSEMBLY_SWEEP_EVERY)
