"""All SQL of the job queue.

Claiming is one ``UPDATE … WHERE id IN (SELECT … FOR UPDATE SKIP LOCKED) RETURNING``: on
PostgreSQL the row locks let concurrent workers pass each other without waiting or taking the
same job; on SQLite ``FOR UPDATE`` is not rendered and the transaction's ``BEGIN IMMEDIATE``
makes the claim a single writer's. Every later write to a running job is fenced by
``lease_owner`` and ``attempts``, so a worker that lost its lease cannot overwrite the outcome
of the worker that took the job over.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, case, delete, func, or_, select, text, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from relaypacs.jobs.models import (
    REQUEUEABLE_STATES,
    UNFINISHED_SQL,
    UNFINISHED_STATES,
    Job,
    JobSchedule,
    JobState,
)

_NO_SYNC = {"synchronize_session": False}


@dataclass(frozen=True)
class ClaimedJob:
    id: uuid.UUID
    kind: str
    payload: dict[str, Any]
    priority: int
    attempt: int
    max_attempts: int | None
    queued_at: datetime


def _dialect(session: AsyncSession) -> str:
    return session.get_bind().dialect.name


async def insert_job(session: AsyncSession, values: dict[str, Any]) -> Job:
    job = Job(**values)
    session.add(job)
    await session.flush()
    return job


async def insert_job_unless_unfinished_duplicate(
    session: AsyncSession, values: dict[str, Any]
) -> Job | None:
    """Insert, or do nothing when an unfinished job holds the same ``dedupe_key``.

    ``ON CONFLICT DO NOTHING`` (rather than catching the violation) keeps the caller's
    PostgreSQL transaction usable, and waits for a concurrent inserter of the same key.
    """
    insert = postgresql.insert if _dialect(session) == "postgresql" else sqlite.insert
    statement = (
        insert(Job)
        .values(**values)
        .on_conflict_do_nothing(index_elements=[Job.dedupe_key], index_where=text(UNFINISHED_SQL))
        .returning(Job.id)
    )
    inserted = (await session.execute(statement)).scalar_one_or_none()
    if inserted is None:
        return None
    return await session.get_one(Job, inserted)


async def get_unfinished_by_dedupe_key(session: AsyncSession, dedupe_key: str) -> Job | None:
    statement = select(Job).where(Job.dedupe_key == dedupe_key, Job.state.in_(UNFINISHED_STATES))
    return (await session.execute(statement)).scalar_one_or_none()


async def get_job(
    session: AsyncSession, job_id: uuid.UUID, *, for_update: bool = False
) -> Job | None:
    statement = select(Job).where(Job.id == job_id)
    if for_update:
        statement = statement.with_for_update()
    return (await session.execute(statement)).scalar_one_or_none()


async def bury_abandoned(
    session: AsyncSession, *, now: datetime, max_abandoned: int
) -> list[tuple[uuid.UUID, str]]:
    """Mark ``dead`` the running jobs whose lease expired once too often (workers keep dying)."""
    statement = (
        update(Job)
        .where(
            Job.state == JobState.running,
            Job.lease_expires_at < now,
            Job.abandoned_count + 1 >= max_abandoned,
        )
        .values(
            state=JobState.dead,
            finished_at=now,
            updated_at=now,
            lease_owner=None,
            lease_expires_at=None,
            last_error=f"abandoned: its worker stopped {max_abandoned} times while running it",
        )
        .returning(Job.id, Job.kind)
    )
    result = await session.execute(statement, execution_options=_NO_SYNC)
    return [(row.id, row.kind) for row in result.all()]


async def claim_jobs(
    session: AsyncSession,
    *,
    kinds: Collection[str],
    owner: str,
    now: datetime,
    lease_expires_at: datetime,
    limit: int,
) -> list[ClaimedJob]:
    """Lease up to ``limit`` due jobs (or jobs of dead workers), highest priority first."""
    if not kinds or limit <= 0:
        return []
    due = or_(
        and_(Job.state == JobState.queued, Job.run_at <= now),
        and_(Job.state == JobState.running, Job.lease_expires_at < now),
    )
    candidates = (
        select(Job.id)
        .where(Job.kind.in_(kinds), due)
        .order_by(Job.priority.desc(), Job.run_at, Job.created_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    statement = (
        update(Job)
        .where(Job.id.in_(candidates.scalar_subquery()))
        .values(
            state=JobState.running,
            attempts=Job.attempts + 1,
            abandoned_count=Job.abandoned_count + case((Job.state == JobState.running, 1), else_=0),
            lease_owner=owner,
            lease_expires_at=lease_expires_at,
            updated_at=now,
        )
        .returning(
            Job.id,
            Job.kind,
            Job.payload,
            Job.priority,
            Job.attempts,
            Job.max_attempts,
            Job.queued_at,
        )
    )
    rows = (await session.execute(statement, execution_options=_NO_SYNC)).all()
    claimed = [
        ClaimedJob(
            id=row.id,
            kind=row.kind,
            payload=row.payload,
            priority=row.priority,
            attempt=row.attempts,
            max_attempts=row.max_attempts,
            queued_at=row.queued_at,
        )
        for row in rows
    ]
    claimed.sort(key=lambda job: -job.priority)
    return claimed


def _leased(job_id: uuid.UUID, owner: str, attempt: int) -> Any:
    return and_(
        Job.id == job_id,
        Job.state == JobState.running,
        Job.lease_owner == owner,
        Job.attempts == attempt,
    )


async def renew_leases(
    session: AsyncSession,
    leases: Sequence[tuple[uuid.UUID, int]],
    *,
    owner: str,
    now: datetime,
    lease_expires_at: datetime,
) -> set[uuid.UUID]:
    """Extend this worker's leases; returns the ids it still holds."""
    if not leases:
        return set()
    statement = (
        update(Job)
        .where(or_(*(_leased(job_id, owner, attempt) for job_id, attempt in leases)))
        .values(lease_expires_at=lease_expires_at, updated_at=now)
        .returning(Job.id)
    )
    result = await session.execute(statement, execution_options=_NO_SYNC)
    return set(result.scalars().all())


async def finish_job(
    session: AsyncSession,
    job_id: uuid.UUID,
    *,
    owner: str,
    attempt: int,
    state: JobState,
    now: datetime,
    error: str | None = None,
) -> bool:
    values: dict[str, Any] = {
        "state": state,
        "finished_at": now,
        "updated_at": now,
        "lease_owner": None,
        "lease_expires_at": None,
    }
    if error is not None:
        values["last_error"] = error
    statement = update(Job).where(_leased(job_id, owner, attempt)).values(**values)
    result = await session.execute(statement, execution_options=_NO_SYNC)
    return bool(result.rowcount)  # type: ignore[attr-defined]


async def reschedule_job(
    session: AsyncSession,
    job_id: uuid.UUID,
    *,
    owner: str,
    attempt: int,
    run_at: datetime,
    now: datetime,
    error: str | None,
) -> bool:
    """Back to ``queued`` until ``run_at`` (a retry, or a release at shut-down)."""
    values: dict[str, Any] = {
        "state": JobState.queued,
        "run_at": run_at,
        "updated_at": now,
        "lease_owner": None,
        "lease_expires_at": None,
    }
    if error is not None:
        values["last_error"] = error
    statement = update(Job).where(_leased(job_id, owner, attempt)).values(**values)
    result = await session.execute(statement, execution_options=_NO_SYNC)
    return bool(result.rowcount)  # type: ignore[attr-defined]


async def release_job(
    session: AsyncSession, job_id: uuid.UUID, *, owner: str, attempt: int, now: datetime
) -> bool:
    """Give a job back untouched at shut-down: its attempt does not count."""
    statement = (
        update(Job)
        .where(_leased(job_id, owner, attempt))
        .values(
            state=JobState.queued,
            attempts=Job.attempts - 1,
            run_at=now,
            updated_at=now,
            lease_owner=None,
            lease_expires_at=None,
        )
    )
    result = await session.execute(statement, execution_options=_NO_SYNC)
    return bool(result.rowcount)  # type: ignore[attr-defined]


async def requeue_job(session: AsyncSession, job: Job, *, now: datetime) -> Job:
    job.state = JobState.queued
    job.attempts = 0
    job.abandoned_count = 0
    job.run_at = now
    job.queued_at = now
    job.finished_at = None
    job.updated_at = now
    await session.flush()
    return job


def is_requeueable(job: Job) -> bool:
    return job.state in REQUEUEABLE_STATES


async def ensure_schedules(
    session: AsyncSession, first_run_at: dict[str, datetime], *, now: datetime
) -> None:
    """Create the schedule row of each periodic kind that has none (first run: as given)."""
    if not first_run_at:
        return
    insert = postgresql.insert if _dialect(session) == "postgresql" else sqlite.insert
    statement = (
        insert(JobSchedule)
        .values(
            [
                {"kind": kind, "next_run_at": run_at, "updated_at": now}
                for kind, run_at in first_run_at.items()
            ]
        )
        .on_conflict_do_nothing(index_elements=[JobSchedule.kind])
    )
    await session.execute(statement)


async def get_schedules(session: AsyncSession, kinds: Collection[str]) -> dict[str, datetime]:
    statement = select(JobSchedule.kind, JobSchedule.next_run_at).where(JobSchedule.kind.in_(kinds))
    return {row.kind: row.next_run_at for row in (await session.execute(statement)).all()}


async def advance_schedule(
    session: AsyncSession, kind: str, *, now: datetime, next_run_at: datetime
) -> bool:
    """Move a due schedule to ``next_run_at``; only one worker's update can win a period.

    On PostgreSQL a second worker's UPDATE waits for the first's row lock, then re-checks
    ``next_run_at <= now`` against the committed row and matches nothing.
    """
    statement = (
        update(JobSchedule)
        .where(JobSchedule.kind == kind, JobSchedule.next_run_at <= now)
        .values(next_run_at=next_run_at, updated_at=now)
    )
    result = await session.execute(statement, execution_options=_NO_SYNC)
    return bool(result.rowcount)  # type: ignore[attr-defined]


async def count_by_kind_and_state(session: AsyncSession) -> list[tuple[str, JobState, int]]:
    statement = select(Job.kind, Job.state, func.count()).group_by(Job.kind, Job.state)
    return [(row[0], JobState(row[1]), int(row[2])) for row in (await session.execute(statement))]


async def oldest_queued_run_at(session: AsyncSession, *, now: datetime) -> datetime | None:
    statement = select(func.min(Job.run_at)).where(Job.state == JobState.queued, Job.run_at <= now)
    value: datetime | None = (await session.execute(statement)).scalar_one()
    return value


async def delete_succeeded_before(session: AsyncSession, before: datetime) -> int:
    statement = delete(Job).where(Job.state == JobState.succeeded, Job.finished_at < before)
    result = await session.execute(statement, execution_options=_NO_SYNC)
    return int(result.rowcount)  # type: ignore[attr-defined]
