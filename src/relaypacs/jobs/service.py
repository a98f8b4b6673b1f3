"""Enqueue and administer jobs. Functions here join the caller's transaction and never commit,
so a job is enqueued atomically with the state change that calls for it."""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from relaypacs.db.base import utcnow
from relaypacs.jobs import repository, wakeup
from relaypacs.jobs.exceptions import JobAlreadyQueued, JobNotFound, JobNotRequeueable
from relaypacs.jobs.models import Job, JobPriority, JobState

__all__ = ["Job", "JobPriority", "JobState", "enqueue", "queue_depth", "requeue"]


async def enqueue(
    session: AsyncSession,
    kind: str,
    payload: dict[str, Any],
    *,
    priority: int = JobPriority.routine,
    run_at: datetime | None = None,
    dedupe_key: str | None = None,
    max_attempts: int | None = None,
) -> Job:
    """Add a job to the caller's transaction; workers see it once that transaction commits.

    ``payload`` must be JSON and must not hold patient data (ids only: it is stored and can be
    logged). With ``dedupe_key``, when an unfinished (queued or running) job already has that
    key, that job is returned and nothing is added. ``priority``: higher first (see
    :class:`JobPriority`). ``run_at``: not before this time (UTC-aware). ``max_attempts``: fail
    after this many attempts even within the maximum age.
    """
    if run_at is not None and run_at.tzinfo is None:
        raise ValueError("run_at must be timezone-aware")
    # Fail here, in the caller's request, rather than in a worker later on.
    json.dumps(payload)
    now = utcnow()
    values: dict[str, Any] = {
        "id": uuid.uuid4(),
        "kind": kind,
        "payload": payload,
        "priority": int(priority),
        "state": JobState.queued,
        "attempts": 0,
        "max_attempts": max_attempts,
        "abandoned_count": 0,
        "run_at": run_at or now,
        "queued_at": now,
        "dedupe_key": dedupe_key,
        "created_at": now,
        "updated_at": now,
    }
    if dedupe_key is None:
        job = await repository.insert_job(session, values)
    else:
        inserted = await repository.insert_job_unless_unfinished_duplicate(session, values)
        if inserted is None:
            existing = await repository.get_unfinished_by_dedupe_key(session, dedupe_key)
            if existing is not None:
                return existing
            # The other job finished between our insert and our read: try once more.
            inserted = await repository.insert_job_unless_unfinished_duplicate(session, values)
            if inserted is None:
                raise JobAlreadyQueued()
        job = inserted
    wakeup.mark_enqueued(session)
    return job


async def requeue(session: AsyncSession, job_id: uuid.UUID) -> Job:
    """Give a ``failed`` or ``dead`` job a fresh retry budget (admin action)."""
    job = await repository.get_job(session, job_id, for_update=True)
    if job is None:
        raise JobNotFound()
    if not repository.is_requeueable(job):
        raise JobNotRequeueable(f"the job is {job.state.value}")
    if job.dedupe_key is not None and (
        await repository.get_unfinished_by_dedupe_key(session, job.dedupe_key) is not None
    ):
        raise JobAlreadyQueued()
    job = await repository.requeue_job(session, job, now=utcnow())
    wakeup.mark_enqueued(session)
    return job


async def get_job(session: AsyncSession, job_id: uuid.UUID) -> Job:
    job = await repository.get_job(session, job_id)
    if job is None:
        raise JobNotFound()
    return job


async def is_running(session: AsyncSession, dedupe_key: str) -> bool:
    """Whether the unfinished job with ``dedupe_key`` is running now (not merely queued)."""
    job = await repository.get_unfinished_by_dedupe_key(session, dedupe_key)
    return job is not None and job.state is JobState.running


async def queue_depth(session: AsyncSession) -> dict[tuple[str, str], int]:
    """Jobs by (kind, state), for metrics and admin views."""
    return {
        (kind, state.value): count
        for kind, state, count in await repository.count_by_kind_and_state(session)
    }


async def oldest_due_job_age_seconds(session: AsyncSession) -> float:
    """How long the longest-waiting due job has waited (0 when none waits): the backlog signal."""
    now = utcnow()
    oldest = await repository.oldest_queued_run_at(session, now=now)
    return 0.0 if oldest is None else max(0.0, (now - oldest).total_seconds())
