"""Claiming: two workers never run one job at once; higher priority first; never before run_at."""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

from relaypacs.db.base import utcnow
from relaypacs.jobs.models import JobPriority, JobState
from relaypacs.jobs.registry import JobContext, JobRegistry
from relaypacs.jobs.service import enqueue
from relaypacs.resources import Resources, open_resources
from tests.conftest import make_settings
from tests.jobs.conftest import FAST_JOBS, jobs_of_kind, running_worker


async def test_two_workers_on_separate_engines_never_run_the_same_job(
    database_url: str, data_dir: Path, registry: JobRegistry, kind: str
) -> None:
    # Exclusivity is the rule here, not lease expiry: a lease no loaded machine outlives.
    job_settings = make_settings(database_url, data_dir, **{**FAST_JOBS, "job_lease_seconds": 30})
    job_count = 120
    running: set[str] = set()
    overlaps: list[str] = []
    runs: dict[str, list[str]] = {}
    all_done = asyncio.Event()

    @registry.job_handler(kind)
    async def exclusive(ctx: JobContext, payload: dict[str, Any]) -> None:
        job = str(ctx.job_id)
        if job in running:
            overlaps.append(job)
        running.add(job)
        runs.setdefault(job, []).append(ctx.resources.engine.url.database or "")
        # A round trip on this worker's own connection, as a real handler would make.
        async with ctx.sessionmaker() as session:
            await session.connection()
        await asyncio.sleep(0)
        running.discard(job)
        if len(runs) == job_count:
            all_done.set()

    async with (
        open_resources(job_settings) as first,
        open_resources(job_settings) as second,
    ):
        assert first.engine is not second.engine
        async with running_worker(first, registry) as one, running_worker(second, registry) as two:
            for start in range(0, job_count, 20):
                async with first.sessionmaker() as session:
                    for n in range(start, start + 20):
                        await enqueue(session, kind, {"n": n})
                    await session.commit()
            await asyncio.wait_for(all_done.wait(), timeout=60)
        claimed = (one.counters.claimed, two.counters.claimed)
    assert overlaps == []
    assert all(len(engines) == 1 for engines in runs.values())
    assert sum(claimed) == job_count
    # Both really competed for the same rows.
    assert min(claimed) > 0, claimed
    jobs = await jobs_of_kind(first, kind)
    assert {job.state for job in jobs} == {JobState.succeeded}
    assert {job.attempts for job in jobs} == {1}


async def test_higher_priority_jobs_run_first(
    resources: Resources, registry: JobRegistry, kind: str
) -> None:
    order: list[str] = []
    finished = asyncio.Event()

    @registry.job_handler(kind)
    async def handler(ctx: JobContext, payload: dict[str, Any]) -> None:
        order.append(payload["level"])
        if len(order) == 5:
            finished.set()

    due = utcnow() - timedelta(seconds=5)
    async with resources.sessionmaker() as session:
        # Enqueued oldest first, so that priority, not age, must decide.
        for level, priority in [
            ("routine-1", JobPriority.routine),
            ("routine-2", JobPriority.routine),
            ("stat", JobPriority.stat),
            ("urgent", JobPriority.urgent),
            ("emergency", JobPriority.emergency),
        ]:
            await enqueue(session, kind, {"level": level}, priority=priority, run_at=due)
            due += timedelta(milliseconds=1)
        await session.commit()
    async with running_worker(resources, registry, concurrency=1):
        await asyncio.wait_for(finished.wait(), timeout=10)
    assert order == ["emergency", "stat", "urgent", "routine-1", "routine-2"]


async def test_job_does_not_run_before_its_run_at(
    resources: Resources, registry: JobRegistry, kind: str
) -> None:
    ran_at: list[float] = []
    ran = asyncio.Event()

    @registry.job_handler(kind)
    async def handler(ctx: JobContext, payload: dict[str, Any]) -> None:
        ran_at.append(time.monotonic())
        ran.set()

    delay = 0.7
    async with running_worker(resources, registry):
        enqueued_at = time.monotonic()
        async with resources.sessionmaker() as session:
            await enqueue(session, kind, {}, run_at=utcnow() + timedelta(seconds=delay))
            await session.commit()
        await asyncio.wait_for(ran.wait(), timeout=10)
    assert ran_at[0] - enqueued_at >= delay - 0.01


async def test_worker_claims_only_kinds_it_has_handlers_for(
    resources: Resources, registry: JobRegistry, kind: str
) -> None:
    ran = asyncio.Event()

    @registry.job_handler(kind)
    async def handler(ctx: JobContext, payload: dict[str, Any]) -> None:
        ran.set()

    async with resources.sessionmaker() as session:
        foreign = await enqueue(session, f"{kind}.elsewhere", {})
        await enqueue(session, kind, {})
        await session.commit()
    async with running_worker(resources, registry):
        await asyncio.wait_for(ran.wait(), timeout=10)
    (still_queued,) = await jobs_of_kind(resources, f"{kind}.elsewhere")
    assert still_queued.id == foreign.id
    assert (still_queued.state, still_queued.attempts) == (JobState.queued, 0)
