"""The hourly repair of the analytics fact table (see :mod:`relaypacs.analytics.facts`)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import structlog

# Importing the facts module installs its session hooks in the worker process too, so that the
# worker's own state changes (assembly, forwarding) keep upload_stat current.
from relaypacs.analytics import facts, repository  # noqa: F401
from relaypacs.jobs.registry import JobContext, job_handler, register_periodic

log = structlog.get_logger(__name__)

RECONCILE_JOB = "analytics.reconcile"
RECONCILE_BATCH = 5000

register_periodic(RECONCILE_JOB, every=timedelta(hours=1))


@job_handler(RECONCILE_JOB)
async def reconcile_upload_stats(ctx: JobContext, payload: dict[str, Any]) -> None:
    async with ctx.sessionmaker() as session:
        stale = await repository.stale_stat_upload_ids(session, RECONCILE_BATCH)
        if stale:
            await repository.refresh_stats(session, stale)
        await session.commit()
    if stale:
        log.warning("upload_stats_repaired", uploads=len(stale))
