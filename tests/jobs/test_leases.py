"""Leases: a dead worker's job is taken over after its lease, a live worker's never is; a worker
that loses its lease stops; a stopping worker gives its jobs back."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import event, select, update

from relaypacs.config import Settings
from relaypacs.db.base import utcnow
from relaypacs.jobs import repository
from relaypacs.jobs.models import Job, JobState
from relaypacs.jobs.registry import JobContext, JobRegistry
from relaypacs.jobs.service import enqueue, requeue
from relaypacs.resources import Resources, open_resources
from tests.conftest import make_settings
from tests.jobs.conftest import FAST_JOBS, load_job, outcome_of, running_worker


async def _enqueue(resources: Resources, kind: str) -> uuid.UUID:
    async with resources.sessionmaker() as session:
        job = await enqueue(session, kind, {})
        await session.commit()
    return job.id


async def _claim_as_dead_worker(resources: Resources, kind: str, lease: float) -> None:
    """What a worker does before it dies: claim, commit, then never write again."""
    now = utcnow()
    async with resources.sessionmaker() as session:
        claimed = await repository.claim_jobs(
            session,
            kinds=[kind],
            owner=f"dead-worker-{uuid.uuid4().hex[:6]}",
            now=now,
            lease_expires_at=now + timedelta(seconds=lease),
            limit=1,
        )
        await session.commit()
    assert len(claimed) == 1


async def test_job_of_a_dead_worker_is_taken_over_after_its_lease(
    resources: Resources, registry: JobRegistry, kind: str
) -> None:
    attempts: list[int] = []

    @registry.job_handler(kind)
    async def handler(ctx: JobContext, payload: dict[str, Any]) -> None:
        attempts.append(ctx.attempt)

    job_id = await _enqueue(resources, kind)
    claimed_at = time.monotonic()
    await _claim_as_dead_worker(resources, kind, lease=0.8)
    async with running_worker(resources, registry) as worker:
        done = outcome_of(worker, job_id, "succeeded")
        await asyncio.wait_for(done, timeout=10)
    assert time.monotonic() - claimed_at >= 0.8
    assert attempts == [2]
    job = await load_job(resources, job_id)
    assert (job.state, job.attempts, job.abandoned_count) == (JobState.succeeded, 2, 1)


@pytest.mark.slow
async def test_heartbeat_keeps_a_long_job_from_being_taken_over(
    job_settings: Settings, registry: JobRegistry, kind: str
) -> None:
    # A lease twice the suite's: under a loaded machine (a CI host running browsers beside
    # this), two renewals of 0.5 s each missed in a row lost the 1.5 s lease, and rightly so.
    job_settings = job_settings.model_copy(update={"job_lease_seconds": 3.0})
    lease = job_settings.job_lease_seconds
    starts: list[str] = []
    release = asyncio.Event()
    first_started = asyncio.Event()

    @registry.job_handler(kind)
    async def long_running(ctx: JobContext, payload: dict[str, Any]) -> None:
        starts.append(ctx.resources.engine.url.render_as_string())
        first_started.set()
        await release.wait()

    async with (
        open_resources(job_settings) as first,
        open_resources(job_settings) as second,
        running_worker(first, registry) as worker,
    ):
        job_id = await _enqueue(first, kind)
        done = outcome_of(worker, job_id, "succeeded", "lost")
        await asyncio.wait_for(first_started.wait(), timeout=10)
        async with running_worker(second, registry) as rival:
            # Nothing can be awaited for "no takeover happened": watch for three leases.
            await asyncio.sleep(lease * 3)
            assert rival.counters.claimed == 0
        release.set()
        assert await asyncio.wait_for(done, timeout=10) == "succeeded"
    assert len(starts) == 1
    job = await load_job(first, job_id)
    assert (job.state, job.attempts, job.abandoned_count) == (JobState.succeeded, 1, 0)


async def test_worker_that_loses_its_lease_stops_the_handler_and_writes_nothing(
    resources: Resources, registry: JobRegistry, kind: str
) -> None:
    started = asyncio.Event()
    cancelled = asyncio.Event()

    @registry.job_handler(kind)
    async def handler(ctx: JobContext, payload: dict[str, Any]) -> None:
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise

    job_id = await _enqueue(resources, kind)
    async with running_worker(resources, registry) as worker:
        lost = outcome_of(worker, job_id, "lost")
        await asyncio.wait_for(started.wait(), timeout=10)
        # Another worker took the job over (e.g. this one was paused past its lease).
        async with resources.sessionmaker() as session:
            await session.execute(
                update(Job).where(Job.id == job_id).values(lease_owner="another-worker")
            )
            await session.commit()
        await asyncio.wait_for(cancelled.wait(), timeout=10)
        assert await asyncio.wait_for(lost, timeout=10) == "lost"
    job = await load_job(resources, job_id)
    assert (job.state, job.lease_owner) == (JobState.running, "another-worker")


async def test_job_whose_workers_keep_dying_is_dead_and_can_be_requeued(
    database_url: str, data_dir: Any, registry: JobRegistry, kind: str
) -> None:
    settings = make_settings(database_url, data_dir, **{**FAST_JOBS, "job_max_abandoned": 2})
    ran = asyncio.Event()

    @registry.job_handler(kind)
    async def handler(ctx: JobContext, payload: dict[str, Any]) -> None:
        ran.set()

    async with open_resources(settings) as resources:
        job_id = await _enqueue(resources, kind)
        await _claim_as_dead_worker(resources, kind, lease=0)
        await _claim_as_dead_worker(resources, kind, lease=0)  # takes over, dies too
        async with running_worker(resources, registry) as worker:
            await worker.idle()
            job = await load_job(resources, job_id)
            assert job.state is JobState.dead
            assert job.last_error is not None
            assert job.last_error.startswith("abandoned")
            assert not ran.is_set()
            async with resources.sessionmaker() as session:
                await requeue(session, job_id)
                await session.commit()
            await asyncio.wait_for(ran.wait(), timeout=10)


async def test_stopping_worker_gives_its_unfinished_job_back(
    database_url: str, data_dir: Any, registry: JobRegistry, kind: str
) -> None:
    settings = make_settings(
        database_url, data_dir, **{**FAST_JOBS, "job_shutdown_grace_seconds": 0.1}
    )
    started = asyncio.Event()

    @registry.job_handler(kind)
    async def handler(ctx: JobContext, payload: dict[str, Any]) -> None:
        started.set()
        await asyncio.Event().wait()

    async with open_resources(settings) as resources:
        job_id = await _enqueue(resources, kind)
        async with running_worker(resources, registry) as worker:
            released = outcome_of(worker, job_id, "released")
            await asyncio.wait_for(started.wait(), timeout=10)
        assert released.done()
        job = await load_job(resources, job_id)
        # Back in the queue at once, and the interrupted run does not count as an attempt.
        assert (job.state, job.attempts, job.lease_owner) == (JobState.queued, 0, None)


@pytest.mark.slow
async def test_handler_is_stopped_before_its_lease_expires_when_renewal_is_blocked(
    resources: Resources, registry: JobRegistry, kind: str
) -> None:
    started = asyncio.Event()
    stopped_at: list[datetime] = []

    @registry.job_handler(kind)
    async def handler(ctx: JobContext, payload: dict[str, Any]) -> None:
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            stopped_at.append(utcnow())
            raise

    job_id = await _enqueue(resources, kind)
    async with running_worker(resources, registry) as worker:
        lost = outcome_of(worker, job_id, "lost")
        await asyncio.wait_for(started.wait(), timeout=10)
        # Another transaction holds the job's row (PostgreSQL) or the database's write lock
        # (SQLite): the heartbeat's renewal waits behind it, and the lease read here is final.
        async with resources.sessionmaker() as blocker:
            locked = await blocker.execute(
                select(Job.lease_expires_at).where(Job.id == job_id).with_for_update()
            )
            lease_expires_at = locked.scalar_one()
            assert lease_expires_at is not None
            assert await asyncio.wait_for(lost, timeout=10) == "lost"
            await blocker.rollback()
    # Stopped while its lease still held: no other worker could have started it yet.
    assert stopped_at[0] < lease_expires_at


async def test_waiting_for_a_database_connection_does_not_use_up_the_lease_of_the_claimed_job(
    resources: Resources, registry: JobRegistry, kind: str
) -> None:
    lease = resources.settings.job_lease_seconds

    @registry.job_handler(kind)
    async def handler(ctx: JobContext, payload: dict[str, Any]) -> None:
        await asyncio.sleep(lease / 3)  # a short job, well within a lease of its own

    job_id = await _enqueue(resources, kind)
    # Stands in for a pool at its limit or a slow connect on a loaded machine: the worker's next
    # checkout takes longer than a whole lease. It blocks the loop, which only makes it harsher.
    slow_checkouts = [lease + 0.3]

    def slow_checkout(*_: object) -> None:
        if slow_checkouts:
            time.sleep(slow_checkouts.pop())

    pool = resources.engine.sync_engine.pool
    event.listen(pool, "checkout", slow_checkout)
    try:
        async with running_worker(resources, registry) as worker:
            done = outcome_of(worker, job_id, "succeeded", "lost")
            assert await asyncio.wait_for(done, timeout=10) == "succeeded"
    finally:
        event.remove(pool, "checkout", slow_checkout)
    assert not slow_checkouts, "the worker never waited for a connection"
    job = await load_job(resources, job_id)
    assert (job.state, job.attempts) == (JobState.succeeded, 1)
