"""The queue's own housekeeping: succeeded jobs are deleted after the retention period."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import structlog

from relaypacs.db.base import utcnow
from relaypacs.jobs import repository
from relaypacs.jobs.registry import JobContext, job_handler, register_periodic

log = structlog.get_logger(__name__)

PRUNE_JOBS = "jobs.prune"

register_periodic(PRUNE_JOBS, every=timedelta(hours=1))


@job_handler(PRUNE_JOBS)
async def prune_succeeded_jobs(ctx: JobContext, payload: dict[str, Any]) -> None:
    before = utcnow() - timedelta(days=ctx.settings.job_retention_days)
    async with ctx.sessionmaker() as session:
        deleted = await repository.delete_succeeded_before(session, before)
        await session.commit()
    if deleted:
        log.info("jobs_pruned", deleted=deleted)
