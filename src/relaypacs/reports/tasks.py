"""The PACS sync: every minute, the reports that are due ask the PACS for their study's report.

Each report is due every ``RELAYPACS_REPORT_SYNC_SECONDS`` (5 min by default) until it is
ready or ``RELAYPACS_REPORT_SYNC_MAX_DAYS`` have passed; each is synced in its own transaction,
so one unreachable destination or broken report does not hold up the others.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import structlog

from relaypacs.db.base import utcnow
from relaypacs.jobs.registry import JobContext, job_handler, register_periodic
from relaypacs.reports import repository, service
from relaypacs.reports.pacs import report_sources

log = structlog.get_logger(__name__)

SYNC_JOB = "reports.sync"
#: Reports synced per run; the rest wait for the next minute.
SYNC_BATCH = 50

register_periodic(SYNC_JOB, every=timedelta(minutes=1))


@job_handler(SYNC_JOB)
async def sync_due_reports(ctx: JobContext, payload: dict[str, Any]) -> None:
    sources = report_sources(ctx.resources.pacs)
    if not sources:
        return
    async with ctx.sessionmaker() as session:
        due = await repository.due_for_sync(session, utcnow(), SYNC_BATCH)
    ready = failed = 0
    for report_id in due:
        async with ctx.sessionmaker() as session:
            found = await repository.get_with_upload(session, report_id)
            if found is None or found[0].next_sync_at is None:
                continue
            due_at = found[0].next_sync_at
            try:
                lookup = await service.look_up(session, found[0], found[1], sources)
            except Exception as exc:
                # One report's trouble must not stop the others of this run (it would come
                # first again in every run): it is recorded, and asked again later.
                log.warning(
                    "report_sync_failed", report_id=str(report_id), error=type(exc).__name__
                )
                await session.rollback()
                lookup = service.Lookup(None, f"unexpected error ({type(exc).__name__})")
        async with ctx.sessionmaker() as session:
            found = await repository.get_with_upload(session, report_id, for_update=True)
            if found is None or found[0].next_sync_at != due_at:
                continue  # changed meanwhile (another worker, a radiologist): theirs wins
            outcome = await service.record_lookup(session, found[0], found[1], lookup, ctx.settings)
            await session.commit()
        ready += outcome.became_ready
        failed += outcome.error is not None
    if due:
        log.info("reports_synced", checked=len(due), ready=ready, unreachable=failed)
