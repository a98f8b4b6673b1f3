"""Transient failures back off exponentially with jitter; permanent ones and spent budgets fail;
an admin can requeue what failed."""

from __future__ import annotations

import asyncio
import itertools
import time
import uuid
from datetime import timedelta
from typing import Any

import pytest

from relaypacs.jobs.exceptions import (
    JobNotFound,
    JobNotRequeueable,
    PermanentFailure,
    RetryLater,
)
from relaypacs.jobs.models import JobState
from relaypacs.jobs.registry import JobContext, JobRegistry
from relaypacs.jobs.service import enqueue, requeue
from relaypacs.jobs.worker import retry_delay
from relaypacs.resources import Resources
from tests.jobs.conftest import load_job, outcome_of, running_worker


async def _enqueue(resources: Resources, kind: str, **options: Any) -> uuid.UUID:
    async with resources.sessionmaker() as session:
        job = await enqueue(session, kind, {"upload_id": "u-7"}, **options)
        await session.commit()
    return job.id


async def _run_until(
    resources: Resources, registry: JobRegistry, job_id: uuid.UUID, *outcomes: str
) -> str:
    async with running_worker(resources, registry) as worker:
        return await asyncio.wait_for(outcome_of(worker, job_id, *outcomes), timeout=20)


def test_retry_delay_doubles_with_jitter_up_to_the_cap() -> None:
    for attempt, full in [(1, 10), (2, 20), (3, 40), (4, 80), (7, 640), (8, 900), (500, 900)]:
        delays = [retry_delay(attempt, base=10, cap=900) for _ in range(200)]
        assert all(full / 2 <= delay <= full for delay in delays), attempt
        # Jitter: jobs failing together do not come back together.
        assert len({round(delay, 6) for delay in delays}) > 150


async def test_retry_later_backs_off_exponentially_then_succeeds(
    resources: Resources, registry: JobRegistry, kind: str
) -> None:
    started: list[float] = []

    @registry.job_handler(kind)
    async def flaky(ctx: JobContext, payload: dict[str, Any]) -> None:
        started.append(time.monotonic())
        assert ctx.attempt == len(started)
        if ctx.attempt < 4:
            raise RetryLater("PACS unreachable")

    job_id = await _enqueue(resources, kind)
    assert await _run_until(resources, registry, job_id, "succeeded", "failed") == "succeeded"
    gaps = [later - earlier for earlier, later in itertools.pairwise(started)]
    base = resources.settings.job_retry_base_seconds
    # Each wait is at least half of base·2^(attempt-1): 0.025 s, 0.05 s, 0.1 s.
    for attempt, gap in enumerate(gaps, start=1):
        assert gap >= base * 2 ** (attempt - 1) / 2 - 0.005, (attempt, gaps)
    job = await load_job(resources, job_id)
    assert job.state is JobState.succeeded
    assert job.attempts == 4
    assert job.last_error == "PACS unreachable"
    assert job.lease_owner is None
    assert job.finished_at is not None


async def test_retry_later_delay_overrides_the_back_off(
    resources: Resources, registry: JobRegistry, kind: str
) -> None:
    started: list[float] = []

    @registry.job_handler(kind)
    async def busy(ctx: JobContext, payload: dict[str, Any]) -> None:
        started.append(time.monotonic())
        if ctx.attempt == 1:
            raise RetryLater("PACS said Retry-After", delay=0.6)

    job_id = await _enqueue(resources, kind)
    assert await _run_until(resources, registry, job_id, "succeeded") == "succeeded"
    assert started[1] - started[0] >= 0.59


async def test_unexpected_exception_is_retried_and_its_message_is_not_stored(
    resources: Resources, registry: JobRegistry, kind: str
) -> None:
    @registry.job_handler(kind)
    async def broken(ctx: JobContext, payload: dict[str, Any]) -> None:
        if ctx.attempt == 1:
            raise ValueError("bad value in header of DOE^JOHN")

    job_id = await _enqueue(resources, kind)
    assert await _run_until(resources, registry, job_id, "succeeded") == "succeeded"
    job = await load_job(resources, job_id)
    assert job.attempts == 2
    assert job.last_error == "ValueError (see the worker log)"


async def test_permanent_failure_fails_at_once_with_its_reason(
    resources: Resources, registry: JobRegistry, kind: str
) -> None:
    calls = 0

    @registry.job_handler(kind)
    async def refused(ctx: JobContext, payload: dict[str, Any]) -> None:
        nonlocal calls
        calls += 1
        raise PermanentFailure("destination refused every instance (0xC122)")

    job_id = await _enqueue(resources, kind)
    assert await _run_until(resources, registry, job_id, "failed", "retry") == "failed"
    job = await load_job(resources, job_id)
    assert (job.state, job.attempts, calls) == (JobState.failed, 1, 1)
    assert job.last_error == "destination refused every instance (0xC122)"


async def test_job_that_keeps_failing_past_its_max_age_fails(
    resources: Resources, registry: JobRegistry, kind: str
) -> None:
    @registry.job_handler(kind, max_age=timedelta(seconds=0.5))
    async def down(ctx: JobContext, payload: dict[str, Any]) -> None:
        raise RetryLater("PACS unreachable")

    job_id = await _enqueue(resources, kind)
    assert await _run_until(resources, registry, job_id, "failed") == "failed"
    job = await load_job(resources, job_id)
    assert job.state is JobState.failed
    assert job.attempts > 1
    assert job.last_error == f"gave up after {job.attempts} attempts: PACS unreachable"


async def test_job_fails_after_its_max_attempts(
    resources: Resources, registry: JobRegistry, kind: str
) -> None:
    @registry.job_handler(kind)
    async def down(ctx: JobContext, payload: dict[str, Any]) -> None:
        raise RetryLater("PACS unreachable")

    job_id = await _enqueue(resources, kind, max_attempts=3)
    assert await _run_until(resources, registry, job_id, "failed") == "failed"
    assert (await load_job(resources, job_id)).attempts == 3


async def test_admin_requeue_gives_a_failed_job_a_fresh_budget(
    resources: Resources, registry: JobRegistry, kind: str
) -> None:
    pacs_up = False

    @registry.job_handler(kind)
    async def forward(ctx: JobContext, payload: dict[str, Any]) -> None:
        if not pacs_up:
            raise PermanentFailure("destination not configured")

    job_id = await _enqueue(resources, kind)
    assert await _run_until(resources, registry, job_id, "failed") == "failed"
    pacs_up = True
    async with resources.sessionmaker() as session:
        job = await requeue(session, job_id)
        assert job.state is JobState.queued
        await session.commit()
    assert await _run_until(resources, registry, job_id, "succeeded") == "succeeded"
    job = await load_job(resources, job_id)
    assert (job.state, job.attempts) == (JobState.succeeded, 1)


async def test_requeue_refuses_a_job_that_has_not_failed(resources: Resources, kind: str) -> None:
    job_id = await _enqueue(resources, kind)
    async with resources.sessionmaker() as session:
        with pytest.raises(JobNotRequeueable):
            await requeue(session, job_id)
        with pytest.raises(JobNotFound):
            await requeue(session, uuid.uuid4())
        await session.rollback()
    job = await load_job(resources, job_id)
    assert (job.state, job.attempts) == (JobState.queued, 0)
