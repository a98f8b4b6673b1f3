"""`relaypacs worker` as a real process: SIGKILLed mid-job, its job is resumed elsewhere after
the lease; SIGTERM gives the job back at once."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from relaypacs.db.base import utcnow
from relaypacs.jobs.models import JobState
from relaypacs.jobs.registry import JobContext, JobRegistry
from relaypacs.jobs.service import enqueue
from relaypacs.resources import Resources, open_resources
from tests.conftest import make_settings
from tests.jobs.conftest import FAST_JOBS, load_job, outcome_of, running_worker

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
# Named here, not imported: the test process must not register the process-only handler.
BLOCKING_KIND = "test.process.blocking"
LEASE_SECONDS = 1.5


@asynccontextmanager
async def worker_process(
    database_url: str, data_dir: Path, **env: str
) -> AsyncIterator[asyncio.subprocess.Process]:
    environment = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "RELAYPACS_DATABASE_URL": database_url,
        "RELAYPACS_DATA_DIR": str(data_dir),
        "RELAYPACS_LOG_LEVEL": "INFO",
        "RELAYPACS_JOB_MODULES": json.dumps(["tests.jobs.process_handlers"]),
        "RELAYPACS_JOB_LEASE_SECONDS": str(LEASE_SECONDS),
        "RELAYPACS_JOB_POLL_SECONDS": "0.2",
        **env,
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "relaypacs",
        "worker",
        "--concurrency",
        "2",
        cwd=REPO,
        env=environment,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        yield process
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def wait_for_event(process: asyncio.subprocess.Process, event: str) -> dict[str, Any]:
    """Read the process's JSON log lines until one has ``event``."""
    assert process.stdout is not None
    seen: list[bytes] = []
    while line := await process.stdout.readline():
        seen.append(line)
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and record.get("event") == event:
            return record
    raise AssertionError(f"worker exited before logging {event}: {b''.join(seen[-20:])!r}")


async def _enqueue_blocking(resources: Resources) -> uuid.UUID:
    async with resources.sessionmaker() as session:
        job = await enqueue(session, BLOCKING_KIND, {"upload_id": "u-1"})
        await session.commit()
    return job.id


async def test_killed_worker_process_job_is_resumed_by_another_worker_after_its_lease(
    own_database_url: str, tmp_path: Path
) -> None:
    settings = make_settings(own_database_url, tmp_path / "test-data", **FAST_JOBS)
    async with open_resources(settings) as resources:
        job_id = await _enqueue_blocking(resources)
        async with worker_process(own_database_url, tmp_path / "worker-data") as process:
            started = await asyncio.wait_for(wait_for_event(process, "test_job_started"), 60)
            assert (started["job_id"], started["attempt"]) == (str(job_id), 1)
            process.send_signal(signal.SIGKILL)
            assert await process.wait() == -signal.SIGKILL
            assert process.stdout is not None
            # What the worker logged after the job started, to explain a failure below.
            last_words = (await process.stdout.read()).decode(errors="replace")
        orphan = await load_job(resources, job_id)
        assert orphan.state is JobState.running, last_words
        assert orphan.lease_owner is not None
        assert f":{process.pid}:" in orphan.lease_owner
        assert orphan.lease_expires_at is not None

        resumed_at: list[Any] = []
        registry = JobRegistry()

        @registry.job_handler(BLOCKING_KIND)
        async def finish(ctx: JobContext, payload: dict[str, Any]) -> None:
            resumed_at.append((utcnow(), ctx.attempt, payload))

        async with running_worker(resources, registry) as worker:
            done = outcome_of(worker, job_id, "succeeded")
            await asyncio.wait_for(done, timeout=30)
        ((when, attempt, payload),) = resumed_at
        assert when >= orphan.lease_expires_at
        assert (attempt, payload) == (2, {"upload_id": "u-1"})
        job = await load_job(resources, job_id)
        assert (job.state, job.attempts, job.abandoned_count) == (JobState.succeeded, 2, 1)


async def test_sigterm_stops_the_worker_process_and_gives_the_job_back(
    own_database_url: str, tmp_path: Path
) -> None:
    settings = make_settings(own_database_url, tmp_path / "test-data", **FAST_JOBS)
    async with open_resources(settings) as resources:
        job_id = await _enqueue_blocking(resources)
        async with worker_process(
            own_database_url, tmp_path / "worker-data", RELAYPACS_JOB_SHUTDOWN_GRACE_SECONDS="0.2"
        ) as process:
            await asyncio.wait_for(wait_for_event(process, "test_job_started"), 60)
            process.send_signal(signal.SIGTERM)
            await asyncio.wait_for(wait_for_event(process, "job_released"), 30)
            assert await asyncio.wait_for(process.wait(), 30) == 0
        job = await load_job(resources, job_id)
        assert (job.state, job.attempts, job.lease_owner) == (JobState.queued, 0, None)
