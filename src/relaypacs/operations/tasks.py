"""The retention job (PRD C-BIZ-01): once an hour, remove what has been kept long enough.

Each kind of record has its own ``RELAYPACS_RETENTION_*_DAYS`` setting (0 keeps it forever):

- delivered studies: the files stored for an upload the PACS confirmed in full (the upload's
  record and timeline stay; partially delivered studies keep their refused instances);
- ended sign-in sessions: revoked ones, and ones whose refresh tokens all expired;
- notifications, read or not;
- revoked access-token entries past the token's own expiry (always: they refuse nothing).

- audit records, only with RELAYPACS_RETENTION_AUDIT_DAYS set (default: kept forever) and never
  younger than six years: the database refuses to change any audit record or remove a younger one.

docs/operations.md#retention.

Each kind commits on its own, so one failing kind never holds back the others, and the job is
idempotent: running it twice removes nothing more.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import structlog

from relaypacs.db.base import utcnow
from relaypacs.jobs.registry import JobContext, job_handler, register_periodic
from relaypacs.operations import repository
from relaypacs.operations.metrics import RETENTION_DELETED
from relaypacs.uploads import service as uploads_service

log = structlog.get_logger(__name__)

RETENTION_JOB = "operations.retention"
RETENTION_EVERY = timedelta(hours=1)
# Bounded batches keep each transaction (and each S3 delete burst) short.
PURGE_BATCH = 200

register_periodic(RETENTION_JOB, every=RETENTION_EVERY)


@job_handler(RETENTION_JOB)
async def apply_retention(ctx: JobContext, payload: dict[str, Any]) -> None:
    settings = ctx.settings
    now = utcnow()
    removed: dict[str, int] = {}

    if settings.retention_delivered_study_days:
        cutoff = now - timedelta(days=settings.retention_delivered_study_days)
        purged = 0
        while True:
            async with ctx.sessionmaker() as session:
                upload_ids = await repository.delivered_uploads_to_purge(
                    session, cutoff, PURGE_BATCH
                )
                for upload_id in upload_ids:
                    await uploads_service.purge_stored_bytes(
                        session, ctx.resources.chunk_store, upload_id
                    )
                    await session.commit()
            purged += len(upload_ids)
            if len(upload_ids) < PURGE_BATCH:
                break
        removed["delivered_study"] = purged

    async with ctx.sessionmaker() as session:
        removed["revoked_access_token"] = await repository.delete_expired_access_token_denials(
            session, now
        )
        if settings.retention_expired_session_days:
            removed["login_session"] = await repository.delete_ended_login_sessions(
                session, now - timedelta(days=settings.retention_expired_session_days)
            )
        await session.commit()

    if settings.retention_notification_days:
        async with ctx.sessionmaker() as session:
            removed["notification"] = await repository.delete_notifications_before(
                session, now - timedelta(days=settings.retention_notification_days)
            )
            await session.commit()

    if settings.retention_audit_days:
        async with ctx.sessionmaker() as session:
            removed["audit_event"] = await repository.delete_audit_events_before(
                session, now - timedelta(days=settings.retention_audit_days)
            )
            await session.commit()

    for record, count in removed.items():
        if count:
            RETENTION_DELETED.labels(record=record).inc(count)
    if any(removed.values()):
        log.info("retention_applied", **{record: n for record, n in removed.items() if n})
