"""Job handlers of the uploads domain: assembly + validation (per file as soon as it is
complete, then the rest after ``complete``), and the expiry sweep."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import timedelta
from typing import Any

import structlog

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
from relaypacs.uploads.models import UploadState
from relaypacs.uploads.overlap import ASSEMBLE_READY_JOB, FORWARD_READY_JOB
from relaypacs.uploads.store import StoreUnavailable

log = structlog.get_logger(__name__)

EXPIRY_SWEEP_EVERY = timedelta(minutes=10)
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
        failed = False
        async with ctx.sessionmaker() as session:
            upload = await repository.get_upload(session, upload_id, lock="update")
            if upload is not None and upload.state is UploadState.assembling:
                upload.state = UploadState.failed
                upload.failure_reason = str(exc)
                upload.updated_at = utcnow()
                await repository.add_event(session, upload_id, UploadState.failed, str(exc))
                await reports_service.on_upload_failed(session, upload, [str(exc)])
                failed = True
            await session.commit()
        if failed:
            metrics.record_upload_finished(UploadState.failed.value)
        raise PermanentFailure(str(exc)) from exc


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
