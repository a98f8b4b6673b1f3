"""Forwarding to a real Orthanc through the whole gateway: studies uploaded over HTTP arrive
byte for byte, survive the PACS being down or killed mid-forward, and refusals are kept with
their reasons (DESIGN.md promises 4 and 5)."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import REGISTRY
from pydicom.uid import generate_uid
from sqlalchemy import select

from relaypacs.jobs.models import Job
from relaypacs.jobs.worker import Worker
from relaypacs.pacs.breaker import CircuitState
from relaypacs.pacs.forwarding import MISSING_AFTER_STOW
from relaypacs.uploads.service import FORWARD_JOB
from relaypacs.uploads.store import chunk_key
from tests.pacs.forwarding import (
    API,
    DISCARDED_SERIES,
    FINAL_STATES,
    ForwardingBase,
    RecordingOrthanc,
    assemble_without_forwarding,
    job_outcomes,
    module_forwarding_base,
    pacs_settings,
    recording_orthanc,
    requeue_as_admin,
    send_study,
    series,
    sha256_hex,
    sop_instance_uid,
    timeline,
    wait_for_state,
    wait_for_status,
    with_series_description,
)
from tests.support import uploads
from tests.support.accounts import new_client, running_app, sign_in
from tests.support.dicom_studies import instance, zip_of
from tests.support.orthanc import orthanc_available

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not orthanc_available(), reason="apt orthanc + orthanc-dicomweb"),
]


base = module_forwarding_base("forwarding")
orthanc = recording_orthanc  # each test gets an Orthanc of its own


async def test_every_instance_reaches_orthanc_byte_for_byte_and_is_confirmed(
    base: ForwardingBase, orthanc: RecordingOrthanc
) -> None:
    study_uid = generate_uid()
    plain = series(3, study_uid)
    entries = {f"DICOM/IMG{n}": data for n, data in enumerate(series(2, study_uid), 1)}
    async with (
        running_app(base.settings(**pacs_settings(orthanc))) as app,
        new_client(app) as client,
    ):
        user = await sign_in(client, app)
        names = ["1.dcm", "2.dcm", "3.dcm", "export.zip"]
        session = await uploads.start(client, user.headers, [*plain, zip_of(entries)], names=names)
        await uploads.send_all(client, session)
        status = await uploads.complete_and_wait(client, app, session)

        assert status["state"] == "delivered", status
        assert timeline(status)[-4:] == ["validated", "queued", "forwarding", "delivered"]
        assert status["timeline"][-1]["detail"] == "5 instance(s) stored; confirmed with QIDO-RS"
        sent = [*plain, *entries.values()]
        for data in sent:
            # What reached the PACS is exactly what the client sent (a ZIP entry: its bytes).
            assert orthanc.instance_sha256(sop_instance_uid(data)) == sha256_hex(data)
        assert orthanc.study_instance_count(study_uid) == len(sent)
        assert set(orthanc.received().values()) == {1}
        assert {i["forward_status"] for i in status["instances"]} == {"stored"}

        reports = (await client.get(f"{API}/reports", headers=user.headers)).json()["items"]
        assert [(r["upload_id"], r["status"]) for r in reports] == [(session.id, "assigned")]
        notes = (await client.get(f"{API}/notifications", headers=user.headers)).json()["items"]
        assert [(n["type"], n["upload_id"]) for n in notes] == [("upload_complete", session.id)]


async def test_orthanc_down_when_the_upload_completes_is_delivered_once_it_is_back(
    base: ForwardingBase, tmp_path: Path
) -> None:
    orthanc = RecordingOrthanc(tmp_path / "orthanc")  # configured, not started: the PACS is down
    study_uid = generate_uid()
    files = series(3, study_uid)
    try:
        async with (
            running_app(base.settings(**pacs_settings(orthanc))) as app,
            new_client(app) as client,
        ):
            user = await sign_in(client, app)
            session = await send_study(client, user.headers, files)
            waiting = await wait_for_state(app, client, session, {"queued"} | FINAL_STATES)
            assert waiting["state"] == "queued"
            assert {i["forward_status"] for i in waiting["instances"]} == {"pending"}

            await asyncio.to_thread(orthanc.start)
            # No user action: the queue's next attempt finds the PACS back.
            status = await wait_for_state(app, client, session, FINAL_STATES)
            assert status["state"] == "delivered", status
            assert "failed" not in timeline(status)
            assert timeline(status)[-3:] == ["queued", "forwarding", "delivered"]
        for data in files:
            assert orthanc.instance_sha256(sop_instance_uid(data)) == sha256_hex(data)
        assert orthanc.study_instance_count(study_uid) == len(files)
    finally:
        await asyncio.to_thread(orthanc.kill)


async def test_orthanc_killed_mid_forward_gets_the_rest_once_it_is_back_without_duplicates(
    base: ForwardingBase, tmp_path: Path
) -> None:
    # A slow PACS (0.1 s per instance), two instances per request, one request at a time.
    orthanc = RecordingOrthanc(tmp_path / "orthanc", delay=0.1)
    await asyncio.to_thread(orthanc.start)
    batch = 2
    settings = base.settings(
        **pacs_settings(orthanc), stow_max_batch_instances=batch, stow_parallel_requests=1
    )
    study_uid = generate_uid()
    files = series(12, study_uid)
    try:
        async with running_app(settings) as app, new_client(app) as client:
            user = await sign_in(client, app)
            session = await send_study(client, user.headers, files)
            await asyncio.to_thread(orthanc.wait_until_received, 5)
            await asyncio.to_thread(orthanc.kill)
            received_before_kill = sum(orthanc.received().values())
            waiting = await wait_for_state(app, client, session, {"queued"} | FINAL_STATES)
            assert waiting["state"] == "queued"
            stored_before = {
                i["sop_instance_uid"]
                for i in waiting["instances"]
                if i["forward_status"] == "stored"
            }
            assert len(stored_before) >= 2 * batch

            await asyncio.to_thread(orthanc.start)
            status = await wait_for_state(app, client, session, FINAL_STATES)
            assert status["state"] == "delivered", status
        assert orthanc.study_instance_count(study_uid) == len(files)
        for data in files:
            assert orthanc.instance_sha256(sop_instance_uid(data)) == sha256_hex(data)
        received = orthanc.received()
        # What was recorded as stored before the kill was never sent again; at most the one
        # request in flight at the kill was.
        assert all(received[uid] == 1 for uid in stored_before)
        assert sum(received.values()) - len(files) <= batch
        assert received_before_kill < len(files)
    finally:
        await asyncio.to_thread(orthanc.kill)


async def test_a_damaged_copy_is_refused_with_its_reason_while_the_rest_are_delivered(
    base: ForwardingBase, orthanc: RecordingOrthanc
) -> None:
    study_uid = generate_uid()
    files = series(3, study_uid)
    settings = base.settings(**pacs_settings(orthanc), run_worker_in_process=False)
    async with running_app(settings) as app, new_client(app) as client:
        user = await sign_in(client, app)
        session = await send_study(client, user.headers, files)
        await assemble_without_forwarding(app.state.resources)
        # The gateway's copy of the second file changes at rest after validation (a file sent
        # as one chunk is kept as that chunk).
        stored = (
            base.data_dir
            / "chunks"
            / chunk_key(uuid.UUID(session.id), uuid.UUID(session.file_id(1)), 0)
        )
        damaged = bytearray(stored.read_bytes())
        damaged[len(damaged) // 2] ^= 0xFF
        stored.write_bytes(bytes(damaged))

        worker = Worker(app.state.resources)
        worker.start()
        try:
            status = await wait_for_state(app, client, session, FINAL_STATES, worker=worker)
        finally:
            await worker.stop()

        assert status["state"] == "partially_delivered", status
        assert status["failure_reason"] == "1 of 3 instance(s) refused"
        by_uid = {i["sop_instance_uid"]: i for i in status["instances"]}
        bad = by_uid[sop_instance_uid(files[1])]
        assert (bad["forward_status"], bad["forward_reason"]) == (
            "refused",
            "not sent: the stored instance does not match its SHA-256",
        )
        assert orthanc.instance_id(sop_instance_uid(files[1])) is None
        for data in (files[0], files[2]):
            assert by_uid[sop_instance_uid(data)]["forward_status"] == "stored"
            assert orthanc.instance_sha256(sop_instance_uid(data)) == sha256_hex(data)
        notes = (await client.get(f"{API}/notifications", headers=user.headers)).json()["items"]
        assert [(n["type"], n["title"]) for n in notes] == [
            ("upload_complete", "Study partly delivered to the PACS")
        ]


async def test_instance_files_gone_from_the_gateways_disk_never_open_the_circuit_to_the_pacs(
    base: ForwardingBase, orthanc: RecordingOrthanc
) -> None:
    study_uid = generate_uid()
    files = series(2, study_uid)
    failures = 2
    settings = base.settings(
        **pacs_settings(orthanc),
        run_worker_in_process=False,
        pacs_breaker_failures=failures,
        pacs_breaker_reset_seconds=3600,  # an opened circuit would stay open for the test
        stow_max_batch_instances=1,  # a failed request per instance: enough to open it at once
    )
    async with running_app(settings) as app, new_client(app) as client:
        user = await sign_in(client, app)
        session = await send_study(client, user.headers, files)
        await assemble_without_forwarding(app.state.resources)
        # The gateway's copies go missing after validation (a file sent as one chunk is kept as
        # that chunk): every read of the study fails, as it would with the disk in trouble.
        for position in range(len(files)):
            key = chunk_key(uuid.UUID(session.id), uuid.UUID(session.file_id(position)), 0)
            (base.data_dir / "chunks" / key).unlink()

        worker = Worker(app.state.resources)
        worker.start()
        try:
            # More attempts than it takes failures to open the circuit.
            async with job_outcomes(worker) as happened, asyncio.timeout(60):
                while (await _attempts(app.state.sessionmaker, session.id)) <= failures:
                    happened.clear()
                    await happened.wait()
        finally:
            await worker.stop()
        status = await uploads.status(client, session)
        breaker = app.state.resources.pacs.primary.breaker

    assert breaker.state is CircuitState.closed
    assert REGISTRY.get_sample_value("relaypacs_pacs_up", {"destination": "orthanc"}) == 1.0
    assert status["state"] == "queued", status
    # The wait is put down to the gateway's own storage, never to the PACS.
    detail = status["timeline"][-1]["detail"]
    assert detail.startswith("2 instance(s) not stored yet: chunk store: FileNotFoundError"), detail
    assert "PACS" not in detail, detail
    assert "STOW-RS" not in detail, detail
    assert {(i["forward_status"], i["forward_reason"]) for i in status["instances"]} == {
        ("pending", "chunk store: FileNotFoundError")
    }
    assert orthanc.received() == {}


async def _attempts(sessionmaker: Any, upload_id: str) -> int:
    async with sessionmaker() as db:
        jobs = (await db.scalars(select(Job).where(Job.kind == FORWARD_JOB))).all()
        return sum(job.attempts for job in jobs if job.payload["upload_id"] == upload_id)


async def test_an_instance_the_pacs_discards_is_refused_once_qido_cannot_find_it(
    base: ForwardingBase, orthanc: RecordingOrthanc
) -> None:
    study_uid = generate_uid()
    kept = series(2, study_uid)
    discarded = with_series_description(instance(study_uid=study_uid), DISCARDED_SERIES)
    async with (
        running_app(base.settings(**pacs_settings(orthanc))) as app,
        new_client(app) as client,
    ):
        user = await sign_in(client, app)
        session = await send_study(client, user.headers, [*kept, discarded])
        status = await wait_for_state(app, client, session, FINAL_STATES)

    # Orthanc's STOW-RS answer listed it as stored; only the QIDO-RS check shows it is not.
    assert status["state"] == "partially_delivered", status
    by_uid = {i["sop_instance_uid"]: i for i in status["instances"]}
    lost = sop_instance_uid(discarded)
    assert (by_uid[lost]["forward_status"], by_uid[lost]["forward_reason"]) == (
        "refused",
        MISSING_AFTER_STOW,
    )
    received = orthanc.received()
    assert received[lost] == 2  # sent once more before it was given up
    assert [received[sop_instance_uid(data)] for data in kept] == [1, 1]
    assert orthanc.study_instance_count(study_uid) == len(kept)


async def test_a_study_the_pacs_refuses_entirely_fails_with_the_reason_until_an_admin_requeues_it(
    base: ForwardingBase, orthanc: RecordingOrthanc
) -> None:
    study_uid = generate_uid()
    files = [with_series_description(data, DISCARDED_SERIES) for data in series(2, study_uid)]
    async with (
        running_app(base.settings(**pacs_settings(orthanc))) as app,
        new_client(app) as client,
    ):
        user = await sign_in(client, app)
        session = await send_study(client, user.headers, files)
        status = await wait_for_state(app, client, session, FINAL_STATES)
        notes = (await client.get(f"{API}/notifications", headers=user.headers)).json()["items"]
        reports = (await client.get(f"{API}/reports", headers=user.headers)).json()["items"]

    assert status["state"] == "failed", status
    assert status["failure_reason"] == "the PACS refused every instance (2)"
    assert {(i["forward_status"], i["forward_reason"]) for i in status["instances"]} == {
        ("refused", MISSING_AFTER_STOW)
    }
    assert [(n["type"], n["data"]["reasons"]) for n in notes] == [
        ("upload_failed", [MISSING_AFTER_STOW])
    ]
    # No report waits for a study that is not in the PACS.
    assert reports == []
    assert orthanc.study_instance_count(study_uid) == 0

    # The PACS side is put right (here: the gateway is pointed at a destination that keeps
    # every instance, its local archive), and an admin requeues the study: the refused
    # instances are sent again.
    async with running_app(base.settings()) as app, new_client(app) as client:
        await requeue_as_admin(client, app, session)
        delivered = await wait_for_state(app, client, session, FINAL_STATES)
        notes = (await client.get(f"{API}/notifications", headers=user.headers)).json()["items"]

    assert delivered["state"] == "delivered", delivered
    assert {(i["forward_status"], i["forward_reason"]) for i in delivered["instances"]} == {
        ("stored", None)
    }
    assert delivered["timeline"][-3]["detail"] == (
        "requeued by an administrator; 2 refused instance(s) will be sent again"
    )
    assert timeline(delivered)[-3:] == ["queued", "forwarding", "delivered"]
    assert sorted(n["type"] for n in notes) == ["upload_complete", "upload_failed"]
    archived = {path.read_bytes() for path in (base.data_dir / "archive").rglob("*.dcm")}
    assert set(files) <= archived


async def test_wrong_pacs_credentials_keep_the_study_queued_until_they_are_fixed(
    base: ForwardingBase, orthanc: RecordingOrthanc
) -> None:
    study_uid = generate_uid()
    files = series(2, study_uid)
    wrong = {**pacs_settings(orthanc), "pacs_password": "not-the-password"}
    async with running_app(base.settings(**wrong)) as app, new_client(app) as client:
        user = await sign_in(client, app)
        session = await send_study(client, user.headers, files)
        # Until a STOW-RS attempt has put its reason on the instances and the job has handed
        # the study back to the queue (the reason is written while it is still `forwarding`).
        waiting = await wait_for_status(
            app,
            client,
            session,
            lambda s: (
                s["state"] in FINAL_STATES
                or (s["state"] == "queued" and any(i["forward_reason"] for i in s["instances"]))
            ),
        )
        assert waiting["state"] == "queued"
        # Never blamed on an instance: they wait, with the reason shown.
        assert {(i["forward_status"], i["forward_reason"]) for i in waiting["instances"]} == {
            ("pending", "STOW-RS answered HTTP 401: check the destination's credentials")
        }
        assert orthanc.received() == {}

    async with (
        running_app(base.settings(**pacs_settings(orthanc))) as app,
        new_client(app) as client,
    ):
        status = await wait_for_state(app, client, session, FINAL_STATES)
    assert status["state"] == "delivered", status
    assert orthanc.study_instance_count(study_uid) == len(files)
