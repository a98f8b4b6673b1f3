"""The forwarding stage's job: ``pacs.forward`` takes a validated upload to the primary PACS.

``uploads.service.enqueue_forwarding`` enqueues it (with the study's service-level priority,
so STAT and emergency studies go first) in the transition to ``validated``; registering the
handler here is what switches the stage on. The steps are in :mod:`relaypacs.pacs.forwarding`.

Retries: a PACS that is down, slow or refusing for now never fails an upload early. The job
waits in the queue (upload ``queued``) for the PACS's ``Retry-After`` or the queue's back-off,
whichever is longer, until ``RELAYPACS_FORWARD_MAX_AGE_HOURS`` (default
``RELAYPACS_JOB_MAX_AGE_HOURS``) since it was queued or last requeued by an admin; only then is
the upload ``failed`` and its uploader told. The handler decides that itself, because giving up
must change the upload and notify in one transaction, which the generic worker cannot do.

A forwarding job can also end without its handler deciding: ``dead`` when the workers running
it kept dying (``RELAYPACS_JOB_MAX_ABANDONED``), or ``failed`` by the generic worker. The
``pacs.stalled_deliveries`` sweep (every minute) finds such uploads, still ``validated``,
``queued`` or ``forwarding``, and fails them with the job's reason, telling the uploader; an
admin's requeue (``POST /admin/uploads/{id}/requeue``) then brings them back.
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import structlog

from relaypacs.db.base import utcnow
from relaypacs.jobs import service as jobs_service
from relaypacs.jobs.registry import (
    JobContext,
    PermanentFailure,
    RetryLater,
    job_handler,
    register_periodic,
)
from relaypacs.jobs.worker import retry_delay
from relaypacs.pacs import early, forwarding
from relaypacs.uploads import repository as uploads_repository
from relaypacs.uploads.overlap import FORWARD_READY_JOB
from relaypacs.uploads.service import FORWARD_JOB, job_key

log = structlog.get_logger(__name__)

# Far beyond any configured forwarding age: the handler gives up first (see the docstring).
_WORKER_MAX_AGE = timedelta(days=36500)
# A PACS answering "Retry-After: 0" must not be asked again in a tight loop.
_MIN_RETRY_SECONDS = 1.0

STALLED_JOB = "pacs.stalled_deliveries"
STALLED_SWEEP_EVERY = timedelta(minutes=1)

__all__ = [
    "FORWARD_JOB",
    "FORWARD_READY_JOB",
    "STALLED_JOB",
    "fail_stalled_deliveries",
    "forward",
    "forward_ready",
]


@job_handler(FORWARD_JOB, max_age=_WORKER_MAX_AGE)
async def forward(ctx: JobContext, payload: dict[str, Any]) -> None:
    forwarder = _forwarder(ctx, payload)
    upload_id = forwarder.upload_id
    try:
        report = await forwarder.run()
    except forwarding.NotYetDelivered as exc:
        await _retry_or_give_up(ctx, upload_id, exc.reason, exc.retry_after)
    except Exception as exc:
        # A database hiccup or a bug: retried like a PACS outage, and bounded by the same age.
        log.exception("forward_error", upload_id=str(upload_id), error_type=type(exc).__name__)
        await _retry_or_give_up(ctx, upload_id, f"{type(exc).__name__} (see the worker log)", None)
    else:
        if report.skipped:
            return
        log.info(
            "upload_forwarded",
            upload_id=str(upload_id),
            state=report.state.value if report.state else None,
            sent=report.sent,
            stored=report.stored,
            refused=report.refused,
            passes=report.passes,
            stow_seconds=round(report.stow_seconds, 3),
            confirm_seconds=round(report.confirm_seconds, 3),
        )


@job_handler(FORWARD_READY_JOB)
async def forward_ready(ctx: JobContext, payload: dict[str, Any]) -> None:
    """Instances validated while the study still arrives (``RELAYPACS_FORWARD_WHILE_RECEIVING``).

    Never retried: whatever it could not send waits for the forwarding after ``complete``.
    """
    forwarder = _forwarder(ctx, payload)
    upload_id = forwarder.upload_id
    try:
        report = await early.forward_ready_instances(forwarder)
    except Exception as exc:
        log.exception(
            "forward_early_error", upload_id=str(upload_id), error_type=type(exc).__name__
        )
        return
    if report.sent:
        log.info(
            "upload_forwarded_early",
            upload_id=str(upload_id),
            sent=report.sent,
            stored=report.stored,
            refused=report.refused,
            stow_seconds=round(report.stow_seconds, 3),
        )


def _forwarder(ctx: JobContext, payload: dict[str, Any]) -> forwarding.Forwarder:
    """The upload's forwarder to the primary PACS, from a job's payload."""
    try:
        upload_id = uuid.UUID(str(payload["upload_id"]))
    except (KeyError, ValueError) as exc:
        raise PermanentFailure("payload without a valid upload_id") from exc
    return forwarding.Forwarder(
        sessionmaker=ctx.sessionmaker,
        chunk_store=ctx.resources.chunk_store,
        destination=ctx.resources.pacs.primary,
        settings=ctx.settings,
        upload_id=upload_id,
    )


async def _retry_or_give_up(
    ctx: JobContext, upload_id: uuid.UUID, reason: str, retry_after: float | None
) -> None:
    settings = ctx.settings
    async with ctx.sessionmaker() as session:
        job = await jobs_service.get_job(session, ctx.job_id)
        await session.commit()
    hours = settings.forward_max_age_hours or settings.job_max_age_hours
    deadline = job.queued_at + timedelta(hours=hours)
    now = utcnow()
    if now >= deadline:
        await forwarding.fail_upload(
            ctx.sessionmaker, upload_id, f"not delivered within {hours:g} h: {reason}"
        )
        raise PermanentFailure(f"gave up after {ctx.attempt} attempts: {reason}")
    delay = retry_delay(
        ctx.attempt, base=settings.job_retry_base_seconds, cap=settings.job_retry_cap_seconds
    )
    if retry_after is not None:
        # Retry-After is the least the PACS asked for; a longer back-off still applies.
        delay = max(delay, min(retry_after, settings.job_retry_cap_seconds), _MIN_RETRY_SECONDS)
    # The last attempt runs at the deadline, not before it.
    delay = min(delay, (deadline - now).total_seconds())
    await forwarding.wait_in_queue(
        ctx.sessionmaker, upload_id, f"{reason}; next attempt in {delay:.0f} s"
    )
    raise RetryLater(reason, delay=delay)


@job_handler(STALLED_JOB)
async def fail_stalled_deliveries(ctx: JobContext, payload: dict[str, Any]) -> None:
    """Fail (with the reason, and tell the uploader) every upload whose forwarding job ended
    ``dead`` or ``failed`` while the upload still waited for delivery."""
    async with ctx.sessionmaker() as session:
        stalled = await uploads_repository.uploads_their_job_gave_up_on(
            session,
            states=forwarding.FORWARDABLE_STATES,
            job_key=lambda upload_id: job_key(FORWARD_JOB, upload_id),
        )
        await session.commit()
    for upload_id, error in stalled:
        reason = f"delivery stopped: {error}"
        if await forwarding.fail_upload(ctx.sessionmaker, upload_id, reason):
            log.warning("upload_delivery_stalled", upload_id=str(upload_id))


register_periodic(STALLED_JOB, every=STALLED_SWEEP_EVERY)
