"""The hourly repair of the analytics fact table (see :mod:`relaypacs.analytics.facts`) and the
daily roll-up that long trends read."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import structlog
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

# Importing the facts module installs its session hooks in the worker process too, so that the
# worker's own state changes (assembly, forwarding) keep upload_stat current.
from relaypacs.analytics import facts, repository
from relaypacs.db.base import utcnow
from relaypacs.jobs.registry import JobContext, job_handler, register_periodic

log = structlog.get_logger(__name__)

RECONCILE_JOB = "analytics.reconcile"
RECONCILE_BATCH = 5000

SEAL_JOB = "analytics.seal_days"
#: Days sealed per run: a year of history is sealed within a few runs after an upgrade.
SEAL_DAYS_PER_RUN = 120

register_periodic(RECONCILE_JOB, every=timedelta(hours=1))
register_periodic(SEAL_JOB, every=timedelta(minutes=10))


@job_handler(RECONCILE_JOB)
async def reconcile_upload_stats(ctx: JobContext, payload: dict[str, Any]) -> None:
    async with ctx.sessionmaker() as session:
        stale = await repository.stale_stat_upload_ids(session, RECONCILE_BATCH)
        if stale:
            await repository.refresh_stats(session, stale)
        await session.commit()
    if stale:
        log.warning("upload_stats_repaired", uploads=len(stale))


@job_handler(SEAL_JOB)
async def seal_days(ctx: JobContext, payload: dict[str, Any]) -> None:
    await seal_due_days(ctx.sessionmaker, SEAL_DAYS_PER_RUN)


async def seal_due_days(sessionmaker: async_sessionmaker[AsyncSession], limit: int) -> int:
    """Roll up the days old enough to seal that are not (or no longer) sealed, oldest first,
    one short transaction each (on SQLite each holds the one write lock)."""
    newest = facts.last_sealable_day(utcnow().date())
    async with sessionmaker() as session:
        days = await repository.days_to_seal(session, newest, limit)
        await session.commit()
    for day in days:
        async with sessionmaker() as session:
            await repository.seal_day(session, day, utcnow())
            await session.commit()
    if days:
        log.info("analytics_days_sealed", days=len(days))
    return len(days)
