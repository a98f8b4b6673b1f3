"""Housekeeping of the live-event log and stream tickets."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import structlog

from relaypacs.jobs.registry import JobContext, job_handler, register_periodic

# Importing service also installs the session hooks (relaypacs.notifications.live) in the
# worker process, so its transactions publish upload_state and notification events.
from relaypacs.notifications import service

log = structlog.get_logger(__name__)

PRUNE_JOB = "notifications.prune"

register_periodic(PRUNE_JOB, every=timedelta(hours=1))


@job_handler(PRUNE_JOB)
async def prune_stream_log(ctx: JobContext, payload: dict[str, Any]) -> None:
    retention = timedelta(hours=ctx.settings.sse_event_retention_hours)
    async with ctx.sessionmaker() as session:
        events, tickets = await service.prune(session, event_retention=retention)
        await session.commit()
    if events or tickets:
        log.info("stream_log_pruned", events=events, tickets=tickets)
