"""Job-queue fixtures: short leases and back-offs, private registries, workers on demand."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from relaypacs.config import Settings
from relaypacs.jobs.models import Job
from relaypacs.jobs.registry import JobRegistry
from relaypacs.jobs.repository import ClaimedJob
from relaypacs.jobs.worker import Worker
from relaypacs.resources import Resources, open_resources
from tests.conftest import make_settings
from tests.support.databases import backend_of, throwaway_database

# Fast enough for tests, slow enough that a loaded 2-core machine renews leases in time.
FAST_JOBS: dict[str, object] = {
    "job_poll_seconds": 0.2,
    "job_lease_seconds": 1.5,
    "job_retry_base_seconds": 0.05,
    "job_retry_cap_seconds": 0.4,
    "job_shutdown_grace_seconds": 2.0,
}


@pytest.fixture
def job_settings(database_url: str, data_dir: Path) -> Settings:
    return make_settings(database_url, data_dir, **FAST_JOBS)


@pytest.fixture
def own_database_url(database_url: str, tmp_path: Path) -> Iterator[str]:
    """A fresh database of the same backend, for tests whose workers must see no other jobs."""
    with throwaway_database(backend_of(database_url), tmp_path) as url:
        yield url


@pytest.fixture
async def resources(job_settings: Settings) -> AsyncIterator[Resources]:
    async with open_resources(job_settings) as opened:
        yield opened


@pytest.fixture
def registry() -> JobRegistry:
    return JobRegistry()


@pytest.fixture
def kind() -> str:
    """A kind no other test (and no in-process worker of the app) handles."""
    return f"test.{uuid.uuid4().hex[:12]}"


@asynccontextmanager
async def running_worker(
    resources: Resources, registry: JobRegistry, **options: Any
) -> AsyncIterator[Worker]:
    worker = Worker(resources, registry=registry, **options)
    worker.start()
    await worker.started()
    try:
        yield worker
    finally:
        await worker.stop()


def outcome_of(worker: Worker, job_id: uuid.UUID, *outcomes: str) -> asyncio.Future[str]:
    """A future resolved with the first of ``outcomes`` the worker records for ``job_id``."""
    future: asyncio.Future[str] = asyncio.get_running_loop().create_future()

    def listen(job: ClaimedJob, outcome: str) -> None:
        if job.id == job_id and outcome in outcomes and not future.done():
            future.set_result(outcome)

    worker.listeners.append(listen)
    return future


async def load_job(resources: Resources, job_id: uuid.UUID) -> Job:
    async with resources.sessionmaker() as session:
        return (await session.execute(select(Job).where(Job.id == job_id))).scalar_one()


async def jobs_of_kind(resources: Resources, kind: str) -> list[Job]:
    async with resources.sessionmaker() as session:
        statement = select(Job).where(Job.kind == kind).order_by(Job.created_at)
        return list((await session.execute(statement)).scalars())
