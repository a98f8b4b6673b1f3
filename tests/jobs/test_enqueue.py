"""Enqueueing joins the caller's transaction; committing wakes this process's workers."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import pytest

from relaypacs.config import Settings
from relaypacs.jobs.models import JobState
from relaypacs.jobs.registry import JobContext, JobRegistry
from relaypacs.jobs.service import enqueue
from relaypacs.resources import Resources, open_resources
from tests.conftest import make_settings
from tests.jobs.conftest import jobs_of_kind, load_job, outcome_of, running_worker


async def test_enqueue_in_rolled_back_transaction_leaves_no_job(
    resources: Resources, kind: str
) -> None:
    async with resources.sessionmaker() as session:
        job = await enqueue(session, kind, {"upload_id": "u-1"})
        assert job.state is JobState.queued
        await session.rollback()
    assert await jobs_of_kind(resources, kind) == []


async def test_enqueue_is_invisible_until_the_caller_commits(
    resources: Resources, kind: str
) -> None:
    async with resources.sessionmaker() as session:
        job = await enqueue(session, kind, {"upload_id": "u-1"})
        # enqueue never commits: the job only exists once the caller does.
        if not resources.settings.is_sqlite:  # SQLite's one writer would block this read
            assert await jobs_of_kind(resources, kind) == []
        await session.commit()
    stored = await load_job(resources, job.id)
    assert stored.payload == {"upload_id": "u-1"}
    assert stored.attempts == 0


async def test_committed_enqueue_wakes_the_worker_without_waiting_for_a_poll(
    database_url: str, data_dir: Any, registry: JobRegistry, kind: str
) -> None:
    # A poll interval far longer than the test's patience: only the commit hook can be in time.
    slow_poll = make_settings(database_url, data_dir, job_poll_seconds=60)
    ran = asyncio.Event()

    @registry.job_handler(kind)
    async def handler(ctx: JobContext, payload: dict[str, Any]) -> None:
        ran.set()

    async with (
        open_resources(slow_poll) as resources,
        running_worker(resources, registry) as worker,
    ):
        await worker.idle()
        async with resources.sessionmaker() as session:
            await enqueue(session, kind, {})
            await session.commit()
        await asyncio.wait_for(ran.wait(), timeout=5)


async def test_dedupe_key_returns_the_unfinished_job_instead_of_a_second(
    resources: Resources, kind: str
) -> None:
    async with resources.sessionmaker() as session:
        first = await enqueue(session, kind, {"n": 1}, dedupe_key=f"{kind}:study-1")
        await session.commit()
    async with resources.sessionmaker() as session:
        again = await enqueue(session, kind, {"n": 2}, dedupe_key=f"{kind}:study-1")
        other = await enqueue(session, kind, {"n": 3}, dedupe_key=f"{kind}:study-2")
        await session.commit()
    assert again.id == first.id
    assert other.id != first.id
    jobs = await jobs_of_kind(resources, kind)
    assert sorted(job.payload["n"] for job in jobs) == [1, 3]


async def test_dedupe_key_keeps_working_on_a_connection_that_ran_it_many_times(
    resources: Resources, kind: str
) -> None:
    # PostgreSQL switches a prepared statement to a generic plan after five runs; the
    # ON CONFLICT target must still find the partial unique index then.
    async with resources.sessionmaker() as session:
        for n in range(12):
            first = await enqueue(session, kind, {"n": n}, dedupe_key=f"{kind}:{n % 6}")
            again = await enqueue(session, kind, {"n": n}, dedupe_key=f"{kind}:{n % 6}")
            assert again.id == first.id
        await session.commit()
    assert len(await jobs_of_kind(resources, kind)) == 6


async def test_finished_job_does_not_block_a_new_one_with_its_dedupe_key(
    resources: Resources, registry: JobRegistry, kind: str
) -> None:
    @registry.job_handler(kind)
    async def handler(ctx: JobContext, payload: dict[str, Any]) -> None:
        return None

    async with running_worker(resources, registry) as worker:
        async with resources.sessionmaker() as session:
            first = await enqueue(session, kind, {}, dedupe_key=f"{kind}:k")
            done = outcome_of(worker, first.id, "succeeded")
            await session.commit()
        await asyncio.wait_for(done, timeout=10)
        async with resources.sessionmaker() as session:
            second = await enqueue(session, kind, {}, dedupe_key=f"{kind}:k")
            await session.commit()
    assert second.id != first.id


async def test_payload_that_is_not_json_is_refused_and_nothing_is_enqueued(
    resources: Resources, kind: str
) -> None:
    async with resources.sessionmaker() as session:
        with pytest.raises(TypeError):
            await enqueue(session, kind, {"when": timedelta(seconds=1)})
        await session.commit()
    assert await jobs_of_kind(resources, kind) == []


async def test_naive_run_at_is_refused(resources: Resources, kind: str) -> None:
    from datetime import datetime

    async with resources.sessionmaker() as session:
        with pytest.raises(ValueError, match="timezone"):
            await enqueue(session, kind, {}, run_at=datetime(2030, 1, 1))  # noqa: DTZ001
        await session.rollback()


async def test_serve_runs_the_worker_in_process(settings: Settings, app: Any, kind: str) -> None:
    from relaypacs.jobs.registry import default_registry

    ran = asyncio.Event()

    async def handler(ctx: JobContext, payload: dict[str, Any]) -> None:
        ran.set()

    default_registry.job_handler(kind)(handler)
    try:
        async with app.state.sessionmaker() as session:
            await enqueue(session, kind, {})
            await session.commit()
        await asyncio.wait_for(ran.wait(), timeout=10)
    finally:
        default_registry.handlers.pop(kind)
