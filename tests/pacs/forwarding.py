"""Helpers for the forwarding tests: a database of their own, gateway settings with quick
retries, an Orthanc that records what it receives, and waiting for an upload's state."""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pydicom
import pytest
from fastapi import FastAPI
from pydicom.uid import generate_uid

from relaypacs.config import Settings
from relaypacs.jobs.registry import JobRegistry, default_registry, load_task_modules
from relaypacs.jobs.worker import Worker
from relaypacs.resources import Resources
from relaypacs.uploads.service import ASSEMBLE_JOB, FORWARD_JOB
from relaypacs.users.models import Role
from tests.conftest import make_settings
from tests.support import uploads
from tests.support.accounts import sign_in
from tests.support.databases import throwaway_database
from tests.support.dicom_studies import instance
from tests.support.orthanc import OrthancServer, orthanc_available

API = "/api/v1"
#: Orthanc's filter (a PACS policy) silently discards instances of a series with this
#: description, while its STOW-RS answer still lists them as stored.
DISCARDED_SERIES = "DISCARDED BY PACS POLICY"
FINAL_STATES = frozenset({"delivered", "partially_delivered", "failed", "rejected"})


@dataclass(frozen=True)
class ForwardingBase:
    """One database and one DATA_DIR per test module and backend. Apps built on it share the
    chunk store, so a job one app's worker started can be finished by another's."""

    database_url: str
    data_dir: Path
    backend: str

    def settings(self, **overrides: object) -> Settings:
        values: dict[str, object] = {
            # Retries in a fraction of a second, so outages last seconds, not minutes.
            "job_retry_base_seconds": 0.2,
            "job_retry_cap_seconds": 1.0,
            "job_poll_seconds": 0.2,
            "pacs_breaker_reset_seconds": 0.3,
            "pacs_timeout_seconds": 20.0,
        }
        values.update(overrides)
        return make_settings(self.database_url, self.data_dir, **values)


@contextmanager
def forwarding_base(backend: str, directory: Path) -> Iterator[ForwardingBase]:
    with throwaway_database(backend, directory) as url:
        yield ForwardingBase(url, directory / "data", backend)


def pacs_settings(orthanc: OrthancServer) -> dict[str, object]:
    return {
        "pacs_url": orthanc.url,
        "pacs_kind": "orthanc",
        "pacs_name": "orthanc",
        "pacs_username": orthanc.username,
        "pacs_password": orthanc.password,
    }


class RecordingOrthanc(OrthancServer):
    """A real Orthanc whose Lua filter writes down every instance it receives (duplicates
    included), can take ``delay`` seconds per instance (a slow PACS, so that a test can act
    mid-forward) and discards the instances of :data:`DISCARDED_SERIES`."""

    def __init__(self, directory: Path, *, delay: float = 0.0) -> None:
        super().__init__(directory)
        self.received_log = directory / "received.txt"
        script = directory / "record.lua"
        script.write_text(
            f"""
function ReceivedInstanceFilter(dicom, origin, info)
  local log = io.open("{self.received_log}", "a")
  log:write(dicom.SOPInstanceUID .. "\\n")
  log:close()
  local started = os.clock()
  while os.clock() - started < {delay} do end
  return dicom.SeriesDescription ~= "{DISCARDED_SERIES}"
end
"""
        )
        config = json.loads(self.config_path.read_text())
        config["LuaScripts"] = [str(script)]
        self.config_path.write_text(json.dumps(config))

    def wait_until_received(self, count: int, timeout: float = 60.0) -> None:
        """Blocking: until ``count`` instances have reached the PACS (its log is the only
        view another process gives of a forward in progress)."""
        deadline = time.monotonic() + timeout
        while sum(self.received().values()) < count:
            if time.monotonic() > deadline:
                raise TimeoutError(f"Orthanc received {sum(self.received().values())} instances")
            time.sleep(0.02)

    def received(self) -> Counter[str]:
        """How many times each SOP Instance UID reached the PACS."""
        if not self.received_log.exists():
            return Counter()
        return Counter(line for line in self.received_log.read_text().splitlines() if line)


def with_series_description(data: bytes, description: str) -> bytes:
    dataset = pydicom.dcmread(io.BytesIO(data))
    dataset.SeriesDescription = description
    buffer = io.BytesIO()
    dataset.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def series(count: int, study_uid: str, series_uid: str | None = None) -> list[bytes]:
    """``count`` small CT instances of one series of ``study_uid``, numbered from 1."""
    series_uid = series_uid or generate_uid()
    return [
        instance(study_uid=study_uid, series_uid=series_uid, instance_number=n)
        for n in range(1, count + 1)
    ]


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sop_instance_uid(data: bytes) -> str:
    return str(pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True).SOPInstanceUID)


async def send_study(
    client: httpx.AsyncClient,
    headers: dict[str, str],
    contents: list[bytes],
    **study: Any,
) -> uploads.Session:
    """Start an upload of ``contents``, send every chunk and complete it (nothing awaited)."""
    session = await uploads.start(client, headers, contents, **study)
    await uploads.send_all(client, session)
    response = await client.post(
        f"{API}/uploads/{session.id}/complete", headers=session.token_headers
    )
    assert response.status_code == 202, response.text
    return session


@asynccontextmanager
async def job_outcomes(worker: Worker) -> AsyncIterator[asyncio.Event]:
    """An event set whenever ``worker`` records an outcome of an upload job."""
    happened = asyncio.Event()
    loop = asyncio.get_running_loop()

    def listener(job: Any, outcome: str) -> None:
        if job.kind in (ASSEMBLE_JOB, FORWARD_JOB):
            loop.call_soon_threadsafe(happened.set)

    worker.listeners.append(listener)
    try:
        yield happened
    finally:
        worker.listeners.remove(listener)


async def wait_for_state(
    app: FastAPI,
    client: httpx.AsyncClient,
    session: uploads.Session,
    states: set[str] | frozenset[str],
    *,
    worker: Worker | None = None,
    wait_seconds: float = 60.0,
) -> dict[str, Any]:
    """The upload's status once its state is one of ``states``."""
    return await wait_for_status(
        app,
        client,
        session,
        lambda status: status["state"] in states,
        worker=worker,
        wait_seconds=wait_seconds,
    )


async def wait_for_status(
    app: FastAPI,
    client: httpx.AsyncClient,
    session: uploads.Session,
    ready: Callable[[dict[str, Any]], bool],
    *,
    worker: Worker | None = None,
    wait_seconds: float = 60.0,
) -> dict[str, Any]:
    """The upload's status once ``ready(status)``, checked after each outcome of the app's (or
    the given) worker: what a job changes is committed before its outcome is recorded."""
    async with (
        job_outcomes(worker or app.state.job_worker) as happened,
        asyncio.timeout(wait_seconds),
    ):
        while True:
            happened.clear()
            status = await uploads.status(client, session)
            if ready(status):
                return status
            await happened.wait()


async def send_file(client: httpx.AsyncClient, session: uploads.Session, position: int) -> None:
    """Every chunk of the file at ``position`` (the others are left unsent)."""
    for file_position, index in session.all_chunks():
        if file_position == position:
            response = await uploads.put(client, session, position, index)
            assert response.status_code == 201, response.text


async def status_once(
    client: httpx.AsyncClient,
    session: uploads.Session,
    ready: Callable[[dict[str, Any]], bool],
    seconds: float = 30.0,
) -> dict[str, Any]:
    """The upload's status once ``ready(status)``, polled: early jobs (assembly and forwarding
    while the study arrives) report to no worker listener a test could wait on."""
    async with asyncio.timeout(seconds):
        while True:
            status = await uploads.status(client, session)
            if ready(status):
                return status
            await asyncio.sleep(0.05)


def timeline(status: dict[str, Any]) -> list[str]:
    return [event["state"] for event in status["timeline"]]


async def requeue_as_admin(
    client: httpx.AsyncClient, app: FastAPI, session: uploads.Session
) -> dict[str, Any]:
    """A new admin requeues the failed upload (202); the answer's body."""
    admin = await sign_in(client, app, role=Role.admin)
    response = await client.post(f"{API}/admin/uploads/{session.id}/requeue", headers=admin.headers)
    assert response.status_code == 202, response.text
    body: dict[str, Any] = response.json()
    return body


async def assemble_without_forwarding(resources: Resources, jobs: int = 1) -> None:
    """Run only the assembly jobs due now (``jobs`` of them) on a worker of their own, so that
    a test can act between ``validated`` and forwarding."""
    load_task_modules()
    registry = JobRegistry(handlers={ASSEMBLE_JOB: default_registry.handlers[ASSEMBLE_JOB]})
    worker = Worker(resources, registry=registry, concurrency=1)
    done = asyncio.Event()
    outcomes: list[str] = []

    def record(job: Any, outcome: str) -> None:
        outcomes.append(outcome)
        if len(outcomes) == jobs:
            done.set()

    worker.listeners.append(record)
    worker.start()
    try:
        await asyncio.wait_for(done.wait(), 60)
    finally:
        await worker.stop()
    assert outcomes == ["succeeded"] * jobs, outcomes


def module_forwarding_base(name: str) -> Any:
    """A module's ``base`` fixture: its own database and DATA_DIR on the session's backend."""

    @pytest.fixture(scope="module")
    def base(
        settings: Settings, tmp_path_factory: pytest.TempPathFactory
    ) -> Iterator[ForwardingBase]:
        backend = "sqlite" if settings.is_sqlite else "postgresql"
        with forwarding_base(backend, tmp_path_factory.mktemp(f"{name}-{backend}")) as made:
            yield made

    return base


@pytest.fixture(name="orthanc")
async def recording_orthanc(tmp_path: Path) -> AsyncIterator[RecordingOrthanc]:
    """A :class:`RecordingOrthanc` of the test's own (import it to use it as ``orthanc``)."""
    if not orthanc_available():
        pytest.skip("apt orthanc + orthanc-dicomweb are not installed (make system-deps)")
    server = RecordingOrthanc(tmp_path / "orthanc")
    await asyncio.to_thread(server.start)
    yield server
    await asyncio.to_thread(server.kill)
