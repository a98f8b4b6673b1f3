"""`relaypacs worker` processes on PostgreSQL forwarding to a real Orthanc: two workers never
send one study at the same time, and a study whose worker was SIGKILLed mid-forward is resumed
by a restarted worker, sending only what had not been stored."""

from __future__ import annotations

import asyncio
import hashlib
import os
import signal
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from pydicom.uid import generate_uid
from sqlalchemy import select

from relaypacs.dicom.models import DicomInstance, ForwardStatus
from relaypacs.jobs.models import Job
from relaypacs.uploads.service import FORWARD_JOB
from tests.conftest import make_settings
from tests.pacs.forwarding import FINAL_STATES, RecordingOrthanc, send_study, sop_instance_uid
from tests.support import uploads
from tests.support.accounts import new_client, running_app, sign_in
from tests.support.databases import throwaway_database
from tests.support.dicom_studies import instance
from tests.support.orthanc import orthanc_available

pytestmark = [
    pytest.mark.slow,
    pytest.mark.postgres,
    pytest.mark.skipif(not orthanc_available(), reason="apt orthanc + orthanc-dicomweb"),
]

REPO = Path(__file__).resolve().parents[2]
BATCH = 2
INSTANCES = 12


@pytest.fixture
def postgres_url(tmp_path: Path) -> Iterator[str]:
    with throwaway_database("postgresql", tmp_path) as url:
        yield url


@asynccontextmanager
async def worker_process(
    name: str, directory: Path, env: dict[str, str]
) -> AsyncIterator[asyncio.subprocess.Process]:
    log = (directory / f"{name}.log").open("ab")
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "relaypacs",
        "worker",
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO), **env},
        stdout=log,
        stderr=asyncio.subprocess.STDOUT,
    )
    log.close()
    try:
        yield process
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def _forward_job(app: Any, upload_id: str) -> Job:
    async with app.state.sessionmaker() as session:
        jobs = (await session.scalars(select(Job).where(Job.kind == FORWARD_JOB))).all()
        await session.commit()
    [job] = [j for j in jobs if j.payload["upload_id"] == upload_id]
    return job


async def _stored(app: Any, upload_id: str) -> set[str]:
    async with app.state.sessionmaker() as session:
        rows = await session.scalars(
            select(DicomInstance.sop_instance_uid).where(
                DicomInstance.upload_id == uuid.UUID(upload_id),
                DicomInstance.forward_status == ForwardStatus.stored,
            )
        )
        stored = set(rows.all())
        await session.commit()
    return stored


async def test_two_workers_never_send_one_study_at_once_and_a_restarted_worker_resumes(
    tmp_path: Path, postgres_url: str
) -> None:
    orthanc = RecordingOrthanc(tmp_path / "orthanc", delay=0.1)
    await asyncio.to_thread(orthanc.start)
    data_dir = tmp_path / "data"
    pacs = {
        "pacs_url": orthanc.url,
        "pacs_kind": "orthanc",
        "pacs_username": orthanc.username,
        "pacs_password": orthanc.password,
    }
    env = {
        "RELAYPACS_DATABASE_URL": postgres_url,
        "RELAYPACS_DATA_DIR": str(data_dir),
        "RELAYPACS_LOG_LEVEL": "INFO",
        "RELAYPACS_JOB_LEASE_SECONDS": "2",
        "RELAYPACS_JOB_POLL_SECONDS": "0.2",
        "RELAYPACS_JOB_RETRY_BASE_SECONDS": "0.2",
        "RELAYPACS_STOW_MAX_BATCH_INSTANCES": str(BATCH),
        "RELAYPACS_STOW_PARALLEL_REQUESTS": "1",
        **{f"RELAYPACS_{key.upper()}": str(value) for key, value in pacs.items()},
    }
    study_uid, series_uid = generate_uid(), generate_uid()
    files = [
        instance(study_uid=study_uid, series_uid=series_uid, instance_number=n)
        for n in range(1, INSTANCES + 1)
    ]
    # The API process runs no jobs (like `serve` on PostgreSQL): the workers do.
    api = make_settings(postgres_url, data_dir, run_worker_in_process=False, **pacs)
    try:
        async with running_app(api) as app, new_client(app) as client:
            user = await sign_in(client, app)
            session = await send_study(client, user.headers, files)
            async with (
                worker_process("first", tmp_path, env) as first,
                worker_process("second", tmp_path, env) as second,
            ):
                await asyncio.to_thread(orthanc.wait_until_received, 5)
                job = await _forward_job(app, session.id)
                assert job.lease_owner is not None
                holder, idle = (
                    (first, second)
                    if f":{first.pid}:" in job.lease_owner
                    else (
                        second,
                        first,
                    )
                )
                assert f":{holder.pid}:" in job.lease_owner
                holder.send_signal(signal.SIGKILL)
                await holder.wait()
                # Both workers were polling all along, yet nothing reached the PACS twice.
                assert set(orthanc.received().values()) == {1}
                idle.send_signal(signal.SIGTERM)
                assert await idle.wait() == 0
            stored_before = await _stored(app, session.id)
            assert len(stored_before) >= 2 * BATCH
            assert (await uploads.status(client, session))["state"] == "forwarding"

            async with worker_process("restarted", tmp_path, env):
                deadline = time.monotonic() + 60
                while (status := await uploads.status(client, session))[
                    "state"
                ] not in FINAL_STATES:
                    assert time.monotonic() < deadline, status
                    await asyncio.sleep(0.2)
            assert status["state"] == "delivered", status
            job = await _forward_job(app, session.id)
            # Taken over once the killed worker's lease had expired.
            assert (job.attempts, job.abandoned_count) == (2, 1)

        assert orthanc.study_instance_count(study_uid) == INSTANCES
        for data in files:
            uid = sop_instance_uid(data)
            assert orthanc.instance_sha256(uid) == hashlib.sha256(data).hexdigest()
        received = orthanc.received()
        # The restarted worker sent only what had not been recorded as stored (and, at most,
        # again the one request that was in flight at the kill).
        assert all(received[uid] == 1 for uid in stored_before)
        assert sum(received.values()) - INSTANCES <= BATCH
    finally:
        await asyncio.to_thread(orthanc.kill)
