"""Forwarding through the whole gateway without a PACS to hand: the local archive as the
destination, priorities, and giving up after the maximum age (with an admin's requeue)."""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from pydicom.uid import generate_uid
from sqlalchemy import select

from relaypacs.db.base import utcnow
from relaypacs.jobs import repository as jobs_repository
from relaypacs.jobs.models import Job, JobState
from relaypacs.jobs.service import enqueue
from relaypacs.jobs.worker import Worker
from relaypacs.pacs.tasks import STALLED_JOB
from relaypacs.uploads.service import ASSEMBLE_JOB, FORWARD_JOB
from relaypacs.uploads.store import upload_prefix
from relaypacs.uploads.tasks import STALLED_ASSEMBLY_JOB
from tests.operations.test_metrics import scrape, value
from tests.pacs.faulty_server import BAD_GATEWAY, CountingServer
from tests.pacs.forwarding import (
    API,
    FINAL_STATES,
    ForwardingBase,
    assemble_without_forwarding,
    forwarding_base,
    job_outcomes,
    module_forwarding_base,
    requeue_as_admin,
    send_study,
    sop_instance_uid,
    timeline,
    wait_for_state,
)
from tests.support import uploads
from tests.support.accounts import SignedIn, new_client, running_app, sign_in
from tests.support.dicom_studies import instance
from tests.support.orthanc import free_port

base = module_forwarding_base("forwarding")


async def _notifications(client: httpx.AsyncClient, headers: dict[str, str]) -> list[Any]:
    response = await client.get(f"{API}/notifications", headers=headers)
    assert response.status_code == 200, response.text
    items: list[Any] = response.json()["items"]
    return items


async def test_without_a_pacs_the_archive_receives_the_study_byte_for_byte(
    base: ForwardingBase,
) -> None:
    async with running_app(base.settings()) as app, new_client(app) as client:
        user = await sign_in(client, app)
        study_uid, series = generate_uid(), [generate_uid(), generate_uid()]
        files = [
            instance(study_uid=study_uid, series_uid=series[0], instance_number=1),
            instance(study_uid=study_uid, series_uid=series[0], instance_number=2),
            instance(study_uid=study_uid, series_uid=series[1], rows=512, columns=600),
        ]
        before = await scrape(client)
        session = await uploads.start(client, user.headers, files, service_level="stat")
        await uploads.send_all(client, session)
        status = await uploads.complete_and_wait(client, app, session)
        after = await scrape(client)

        assert status["state"] == "delivered", status
        delivered = {"state": "delivered"}
        finished = "relaypacs_uploads_finished_total"
        assert value(after, finished, **delivered) - value(before, finished, **delivered) == 1
        stat = {"service_level": "stat"}
        timed = "relaypacs_upload_delivery_seconds_count"
        assert value(after, timed, **stat) - value(before, timed, **stat) == 1
        assert timeline(status)[-4:] == ["validated", "queued", "forwarding", "delivered"]
        assert status["timeline"][-1]["detail"] == "3 instance(s) stored"
        assert {(i["forward_status"], i["forward_reason"]) for i in status["instances"]} == {
            ("stored", None)
        }
        archive = base.data_dir / "archive"
        for data in files:
            uid = sop_instance_uid(data)
            found = next(i for i in status["instances"] if i["sop_instance_uid"] == uid)
            path = archive / study_uid / found["series_instance_uid"] / f"{uid}.dcm"
            assert path.read_bytes() == data
            assert found["sha256"] == hashlib.sha256(data).hexdigest()
        # Nothing is deleted at delivery: the retention job does that later.
        chunks = base.data_dir / "chunks" / upload_prefix(uuid.UUID(session.id))
        assert any(path.is_file() for path in chunks.rglob("*"))

        reports = (await client.get(f"{API}/reports", headers=user.headers)).json()
        assert [(r["upload_id"], r["status"]) for r in reports["items"]] == [
            (session.id, "assigned")
        ]
        notes = await _notifications(client, user.headers)
        assert [(n["type"], n["upload_id"]) for n in notes] == [("upload_complete", session.id)]


async def test_stat_and_emergency_studies_are_forwarded_before_routine_ones(
    base: ForwardingBase,
) -> None:
    async with (
        running_app(base.settings(run_worker_in_process=False)) as app,
        new_client(app) as client,
    ):
        resources = app.state.resources
        user = await sign_in(client, app)

        async def validated(service_level: str) -> str:
            session = await send_study(
                client, user.headers, [instance()], service_level=service_level
            )
            await assemble_without_forwarding(resources)
            assert (await uploads.status(client, session))["state"] == "validated"
            return session.id

        # The routine study waits longest: a queue by age alone would send it first.
        routine = await validated("routine")
        stat = await validated("stat")
        emergency = await validated("emergency")

        order: list[str] = []
        finished = asyncio.Event()

        def record(job: Any, outcome: str) -> None:
            if job.kind == FORWARD_JOB and outcome == "succeeded":
                order.append(str(job.payload["upload_id"]))
                if len(order) == 3:
                    finished.set()

        worker = Worker(resources, concurrency=1)
        worker.listeners.append(record)
        worker.start()
        try:
            await asyncio.wait_for(finished.wait(), 60)
        finally:
            await worker.stop()
        assert order == [emergency, stat, routine]


async def _fail_by_age(base: ForwardingBase, data: bytes) -> tuple[uploads.Session, SignedIn]:
    # Nothing listens on this port: every attempt finds the PACS down.
    unreachable = base.settings(
        pacs_url=f"http://127.0.0.1:{free_port()}",
        pacs_kind="orthanc",
        forward_max_age_hours=2.0 / 3600,
    )
    async with running_app(unreachable) as app, new_client(app) as client:
        user = await sign_in(client, app)
        session = await send_study(client, user.headers, [data])
        failed = await wait_for_state(app, client, session, FINAL_STATES)
        assert failed["state"] == "failed"
        return session, user


async def _forward_job(app: FastAPI, upload_id: str) -> Job | None:
    async with app.state.sessionmaker() as db:
        jobs = (await db.scalars(select(Job).where(Job.kind == FORWARD_JOB))).all()
        ours = [j for j in jobs if j.payload["upload_id"] == upload_id]
        return ours[0] if ours else None


@pytest.fixture
def own_base(base: ForwardingBase, tmp_path: Path) -> Iterator[ForwardingBase]:
    """A database of the test's own: no other test's study or report reaches its PACS."""
    with forwarding_base(base.backend, tmp_path) as made:
        yield made


async def test_while_the_circuit_is_open_a_queued_study_waits_without_asking_the_pacs(
    own_base: ForwardingBase,
) -> None:
    # A PACS that answers every request with 502: after two failed checks the circuit opens,
    # and the retries after it are told so at once instead of each asking the PACS again.
    async with CountingServer(BAD_GATEWAY) as pacs:
        settings = own_base.settings(
            pacs_url=pacs.url,
            pacs_kind="generic",
            pacs_breaker_failures=2,
            pacs_breaker_reset_seconds=3600,
        )
        async with running_app(settings) as app, new_client(app) as client:
            user = await sign_in(client, app)
            session = await send_study(client, user.headers, [instance()])
            third_attempt_seen_at: datetime | None = None
            async with job_outcomes(app.state.job_worker) as happened, asyncio.timeout(60):
                while True:
                    happened.clear()
                    job = await _forward_job(app, session.id)
                    if job is not None and job.attempts >= 3 and third_attempt_seen_at is None:
                        third_attempt_seen_at = utcnow()
                    if job is not None and job.attempts >= 5:
                        break
                    await happened.wait()
            status = await uploads.status(client, session)
    assert status["state"] == "queued"
    assert "circuit open" in (job.last_error or ""), job.last_error
    assert pacs.request_lines == ["GET /dicom-web/studies?limit=1 HTTP/1.1"] * 2, (
        "retries after the circuit opened must not reach the PACS"
    )
    # Why it waits is on the upload, in one row however many retries there were.
    assert timeline(status)[-2:] == ["queued", "queued"]
    assert timeline(status).count("queued") == 2
    note = status["timeline"][-1]
    assert note["detail"].startswith("the PACS is unreachable: circuit open after repeated ")
    assert "next attempt in" in note["detail"]
    # Dated by the latest retry, so that its "next attempt in" holds.
    assert third_attempt_seen_at is not None
    assert datetime.fromisoformat(note["at"]) > third_attempt_seen_at


async def test_readyz_shows_a_pacs_that_is_down_and_the_studies_waiting_for_it(
    own_base: ForwardingBase,
) -> None:
    async with CountingServer(BAD_GATEWAY) as pacs:
        settings = own_base.settings(pacs_url=pacs.url, pacs_kind="generic", pacs_name="reading")
        async with running_app(settings) as app, new_client(app) as client:
            before = await client.get("/readyz")
            user = await sign_in(client, app)
            session = await send_study(client, user.headers, [instance()])
            await wait_for_state(app, client, session, {"queued"})
            after = await client.get("/readyz")
    for response in (before, after):
        assert response.status_code == 503
        body = response.json()
        assert body["status"] == "not_ready"
        assert body["checks"]["pacs:reading"] == "unavailable: DestinationUnavailable"
        assert body["checks"]["database"] == "ok"
    queue_before, queue_after = before.json()["queue"], after.json()["queue"]
    assert queue_before["studies_awaiting_delivery"] == 0
    assert queue_after["studies_awaiting_delivery"] == 1
    # Its forwarding job waits for the next attempt, or is making it.
    assert queue_after["jobs_queued"] + queue_after["jobs_running"] >= 1
    assert queue_after["oldest_due_job_age_seconds"] >= 0


async def test_a_pacs_down_past_the_maximum_age_fails_the_upload_and_tells_the_uploader(
    base: ForwardingBase,
) -> None:
    unreachable = base.settings(
        pacs_url=f"http://127.0.0.1:{free_port()}",
        pacs_kind="orthanc",
        forward_max_age_hours=2.0 / 3600,
    )
    async with running_app(unreachable) as app, new_client(app) as client:
        user = await sign_in(client, app)
        session = await send_study(client, user.headers, [instance()])
        waiting = await wait_for_state(app, client, session, {"queued"} | FINAL_STATES)
        # Down is not failed: the study waits in the queue while the maximum age lasts.
        assert waiting["state"] == "queued"
        assert waiting["timeline"][-1]["state"] == "queued"

        failed = await wait_for_state(app, client, session, FINAL_STATES)
        assert failed["state"] == "failed"
        assert failed["failure_reason"].startswith("not delivered within 0.000555556 h: ")
        assert "the PACS is unreachable" in failed["failure_reason"]
        assert "failed" not in timeline(failed)[:-1]
        assert timeline(failed)[-2:] == ["queued", "failed"]
        assert [i["forward_status"] for i in failed["instances"]] == ["pending"]
        notes = await _notifications(client, user.headers)
        assert [(n["type"], n["upload_id"]) for n in notes] == [("upload_failed", session.id)]
        assert notes[0]["data"]["reasons"] == [failed["failure_reason"]]
        async with app.state.sessionmaker() as db:
            jobs = (await db.scalars(select(Job).where(Job.kind == FORWARD_JOB))).all()
            ours = [j for j in jobs if j.payload["upload_id"] == session.id]
            assert [j.state for j in ours] == [JobState.failed]
            assert ours[0].attempts > 1
    # The files stay for a requeue.
    chunks = base.data_dir / "chunks" / upload_prefix(uuid.UUID(session.id))
    assert any(path.is_file() for path in chunks.rglob("*"))


async def test_an_admin_requeues_a_failed_delivery_and_it_is_delivered(
    base: ForwardingBase,
) -> None:
    data = instance()
    session, _ = await _fail_by_age(base, data)
    # The PACS is fixed (here: the local archive); the admin sends the study again.
    async with running_app(base.settings()) as app, new_client(app) as client:
        await requeue_as_admin(client, app, session)
        delivered = await wait_for_state(app, client, session, FINAL_STATES)
        assert delivered["state"] == "delivered"
        assert timeline(delivered)[-4:] == ["failed", "queued", "forwarding", "delivered"]
    archived = list((base.data_dir / "archive").rglob("*.dcm"))
    assert any(path.read_bytes() == data for path in archived)


@pytest.mark.parametrize(
    ("kind", "sweep", "stage"),
    [(ASSEMBLE_JOB, STALLED_ASSEMBLY_JOB, "assembly"), (FORWARD_JOB, STALLED_JOB, "delivery")],
    ids=["assembly", "forwarding"],
)
async def test_a_job_whose_workers_keep_dying_fails_the_upload_until_requeued(
    base: ForwardingBase, kind: str, sweep: str, stage: str
) -> None:
    data = instance()
    settings = base.settings(job_max_abandoned=1)
    async with (
        running_app(base.settings(run_worker_in_process=False, job_max_abandoned=1)) as app,
        new_client(app) as client,
    ):
        user = await sign_in(client, app)
        session = await send_study(client, user.headers, [data])
        if kind == FORWARD_JOB:
            await assemble_without_forwarding(app.state.resources)
        # A worker claims the job and dies on it before it writes anything again (for
        # assembly, say, a file that exhausts its memory).
        now = utcnow()
        async with app.state.sessionmaker() as db:
            claimed = await jobs_repository.claim_jobs(
                db, kinds=[kind], owner="dead-worker", now=now, lease_expires_at=now, limit=1
            )
            await db.commit()
        assert [job.payload["upload_id"] for job in claimed] == [session.id]

    async with running_app(settings) as app, new_client(app) as client:
        # The next claim buries the job (dead); the stage's sweep (also run at start) fails
        # the upload the job left behind.
        await app.state.job_worker.idle()
        async with app.state.sessionmaker() as db:
            await enqueue(db, sweep, {})
            await db.commit()
        failed = await _poll_state(client, session, FINAL_STATES)
        assert failed["state"] == "failed", failed
        assert failed["failure_reason"] == (
            f"{stage} stopped: abandoned: its worker stopped 1 times while running it"
        )
        assert failed["timeline"][-1] == {
            **failed["timeline"][-1],
            "state": "failed",
            "detail": failed["failure_reason"],
        }
        waiting = ["pending"] if kind == FORWARD_JOB else []  # never assembled: no instances
        assert [i["forward_status"] for i in failed["instances"]] == waiting
        notes = await _notifications(client, user.headers)
        assert [(n["type"], n["data"]["reasons"]) for n in notes] == [
            ("upload_failed", [failed["failure_reason"]])
        ]
        async with app.state.sessionmaker() as db:
            (job,) = (await db.scalars(select(Job).where(Job.id == claimed[0].id))).all()
            assert job.state is JobState.dead

        # The sweep leaves it failed (no second notification), and an admin's requeue
        # brings the dead job back: the study is delivered.
        async with app.state.sessionmaker() as db:
            await enqueue(db, sweep, {})
            await db.commit()
        await requeue_as_admin(client, app, session)
        delivered = await wait_for_state(app, client, session, {"delivered", "partially_delivered"})
        assert delivered["state"] == "delivered"
        after = timeline(delivered)[timeline(delivered).index("failed") :]
        rerun = ["assembling", "validated"] if kind == ASSEMBLE_JOB else []
        assert after == ["failed", *rerun, "queued", "forwarding", "delivered"]
        notes = await _notifications(client, user.headers)
        assert sorted(n["type"] for n in notes) == ["upload_complete", "upload_failed"]
    archived = list((base.data_dir / "archive").rglob("*.dcm"))
    assert any(path.read_bytes() == data for path in archived)


async def _poll_state(
    client: httpx.AsyncClient, session: uploads.Session, states: frozenset[str]
) -> dict[str, Any]:
    """The upload's status once in ``states`` (the sweep is a job no helper waits for)."""
    async with asyncio.timeout(30):
        while True:
            status = await uploads.status(client, session)
            if status["state"] in states:
                return status
            await asyncio.sleep(0.1)
