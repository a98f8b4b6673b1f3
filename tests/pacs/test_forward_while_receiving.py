"""Forwarding while the study still arrives (``RELAYPACS_FORWARD_WHILE_RECEIVING``), against a
real Orthanc: instances reach the PACS before ``complete``, each exactly once and byte for byte;
``complete`` sends only the rest; a PACS that is down leaves them for the forwarding after
``complete``; a cancelled study says what stayed in the PACS; and when two files hold one
instance, the copy the PACS already has is the one the gateway keeps."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta
from typing import Any

import pytest
from pydantic import ValidationError
from pydicom.uid import generate_uid
from sqlalchemy import update

from relaypacs.db.base import utcnow
from relaypacs.uploads import service as uploads_service
from relaypacs.uploads.models import Upload
from relaypacs.uploads.overlap import assemble_while_receiving
from tests.conftest import make_settings
from tests.operations.test_metrics import scrape, value
from tests.pacs.forwarding import (
    API,
    FINAL_STATES,
    ForwardingBase,
    RecordingOrthanc,
    module_forwarding_base,
    pacs_settings,
    recording_orthanc,
    send_file,
    series,
    sha256_hex,
    sop_instance_uid,
    status_once,
    timeline,
    wait_for_state,
    with_series_description,
)
from tests.support import uploads
from tests.support.accounts import new_client, running_app, sign_in
from tests.support.dicom_studies import instance
from tests.support.orthanc import orthanc_available

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not orthanc_available(), reason="apt orthanc + orthanc-dicomweb"),
]

base = module_forwarding_base("forward-early")
orthanc = recording_orthanc  # each test gets an Orthanc of its own

LIFECYCLE = ["created", "receiving", "assembling", "validated", "queued", "forwarding", "delivered"]


def _stored(status: dict[str, Any]) -> set[str]:
    return {i["sop_instance_uid"] for i in status["instances"] if i["forward_status"] == "stored"}


def test_forwarding_while_receiving_is_off_by_default_and_needs_early_assembly(
    tmp_path: Any,
) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'db.sqlite3'}"
    default = make_settings(url, tmp_path)
    assert default.forward_while_receiving is False
    # The embedded default assembles after `complete`; forwarding early implies assembling early.
    assert assemble_while_receiving(default) is False
    assert assemble_while_receiving(make_settings(url, tmp_path, forward_while_receiving=True))
    with pytest.raises(ValidationError, match="FORWARD_WHILE_RECEIVING"):
        make_settings(url, tmp_path, forward_while_receiving=True, assemble_while_receiving=False)


async def test_instances_reach_the_pacs_while_the_rest_arrives_and_complete_sends_the_rest(
    base: ForwardingBase, orthanc: RecordingOrthanc
) -> None:
    study_uid = generate_uid()
    files = series(4, study_uid)
    settings = base.settings(**pacs_settings(orthanc), forward_while_receiving=True)
    async with running_app(settings) as app, new_client(app) as client:
        user = await sign_in(client, app)
        session = await uploads.start(client, user.headers, files)
        for position in range(3):
            await send_file(client, session, position)
        early = await status_once(client, session, lambda s: len(_stored(s)) == 3)
        # In the PACS, byte for byte, while the upload is still receiving its last file.
        assert early["state"] == "receiving"
        for data in files[:3]:
            assert orthanc.instance_sha256(sop_instance_uid(data)) == sha256_hex(data)
        assert orthanc.instance_sha256(sop_instance_uid(files[3])) is None

        await send_file(client, session, 3)
        status = await uploads.complete_and_wait(client, app, session)
        assert status["state"] == "delivered", status
        # The lifecycle of DESIGN.md, unchanged; QIDO-RS confirmed the whole study.
        assert timeline(status) == LIFECYCLE
        assert status["timeline"][-1]["detail"] == "4 instance(s) stored; confirmed with QIDO-RS"
        assert _stored(status) == {sop_instance_uid(data) for data in files}
    for data in files:
        assert orthanc.instance_sha256(sop_instance_uid(data)) == sha256_hex(data)
    # Nothing was sent twice: `complete` sent only the one instance still pending.
    assert set(orthanc.received().values()) == {1}
    assert orthanc.study_instance_count(study_uid) == len(files)


async def test_files_arriving_one_by_one_go_to_the_pacs_in_few_requests(
    base: ForwardingBase, orthanc: RecordingOrthanc
) -> None:
    # A slow link: one file every 0.15 s. Rounds gather for a moment rather than sending each
    # file in a STOW-RS request of its own (each request, and recording its outcome, has a
    # fixed cost); without that, about one request per file.
    study_uid = generate_uid()
    files = series(9, study_uid)
    settings = base.settings(**pacs_settings(orthanc), forward_while_receiving=True)
    stow_requests = "relaypacs_stow_request_duration_seconds_count"
    async with running_app(settings) as app, new_client(app) as client:
        user = await sign_in(client, app)
        session = await uploads.start(client, user.headers, files)
        before = await scrape(client)
        for position in range(8):
            await send_file(client, session, position)
            await asyncio.sleep(0.15)
        early = await status_once(client, session, lambda s: len(_stored(s)) == 8)
        after = await scrape(client)
    assert early["state"] == "receiving"
    requests = value(after, stow_requests, destination="orthanc", outcome="stored") - value(
        before, stow_requests, destination="orthanc", outcome="stored"
    )
    assert 1 <= requests <= 3, f"{requests:g} STOW-RS requests for 8 files"
    assert set(orthanc.received().values()) == {1}


async def test_a_cancelled_upload_says_which_instances_stay_in_the_pacs(
    base: ForwardingBase, orthanc: RecordingOrthanc
) -> None:
    files = series(3, generate_uid())
    settings = base.settings(**pacs_settings(orthanc), forward_while_receiving=True)
    async with running_app(settings) as app, new_client(app) as client:
        user = await sign_in(client, app)
        session = await uploads.start(client, user.headers, files)
        await send_file(client, session, 0)
        await send_file(client, session, 1)
        await status_once(client, session, lambda s: len(_stored(s)) == 2)
        response = await client.delete(f"{API}/uploads/{session.id}", headers=user.headers)
        assert response.status_code in (200, 204), response.text
        await app.state.job_worker.idle()
        status = await uploads.status(client, session)
        assert status["state"] == "cancelled"
        assert status["timeline"][-1]["detail"] == (
            "2 instance(s) had already been stored in the PACS and remain there"
        )
    assert sum(orthanc.received().values()) == 2


async def test_an_expired_upload_says_which_instances_stay_in_the_pacs(
    base: ForwardingBase, orthanc: RecordingOrthanc
) -> None:
    files = series(2, generate_uid())
    settings = base.settings(**pacs_settings(orthanc), forward_while_receiving=True)
    async with running_app(settings) as app, new_client(app) as client:
        user = await sign_in(client, app)
        session = await uploads.start(client, user.headers, files)
        await send_file(client, session, 0)
        await status_once(client, session, lambda s: len(_stored(s)) == 1)
        await app.state.job_worker.idle()
        # The 24 h pass without the rest of the study or a `complete`.
        async with app.state.sessionmaker() as db:
            await db.execute(
                update(Upload)
                .where(Upload.id == uuid.UUID(session.id))
                .values(expires_at=utcnow() - timedelta(seconds=1))
            )
            expired = await uploads_service.expire_sessions(db, utcnow())
            await db.commit()
        assert expired == [uuid.UUID(session.id)]
        # The upload token ended with the session; its owner still sees it.
        response = await client.get(f"{API}/uploads/{session.id}", headers=user.headers)
        assert response.status_code == 200, response.text
        status = response.json()
        assert status["state"] == "expired"
        assert status["timeline"][-1]["detail"] == (
            "1 instance(s) had already been stored in the PACS and remain there"
        )
        # The uploader is told both: that the session ended, and what stays in the PACS.
        notes = (await client.get(f"{API}/notifications", headers=user.headers)).json()["items"]
        assert [(n["type"], n["data"]["reasons"][1:]) for n in notes] == [
            (
                "upload_failed",
                ["1 instance(s) had already been stored in the PACS and remain there"],
            )
        ]
        assert notes[0]["data"]["reasons"][0].startswith("the upload session expired at ")
    assert sum(orthanc.received().values()) == 1


async def test_a_pacs_down_while_receiving_leaves_the_instances_for_after_complete(
    base: ForwardingBase, tmp_path: Any
) -> None:
    orthanc = RecordingOrthanc(tmp_path / "orthanc")  # configured, not started: the PACS is down
    study_uid = generate_uid()
    files = series(3, study_uid)
    settings = base.settings(**pacs_settings(orthanc), forward_while_receiving=True)
    try:
        async with running_app(settings) as app, new_client(app) as client:
            user = await sign_in(client, app)
            session = await uploads.start(client, user.headers, files)
            await uploads.send_all(client, session)
            # Offered, failed, and kept with the reason; none stored. The job does not insist
            # on a PACS that is down: the forwarding after `complete` retries with back-off.
            tried = await status_once(
                client,
                session,
                lambda s: (
                    len(s["instances"]) == 3 and any(i["forward_reason"] for i in s["instances"])
                ),
            )
            await app.state.job_worker.idle()
            assert tried["state"] == "receiving"
            assert {i["forward_status"] for i in tried["instances"]} == {"pending"}
            reasons = {i["forward_reason"] for i in tried["instances"]} - {None}
            assert reasons == {"STOW-RS failed (ConnectError)"}

            await asyncio.to_thread(orthanc.start)
            response = await client.post(
                f"{API}/uploads/{session.id}/complete", headers=session.token_headers
            )
            assert response.status_code == 202, response.text
            status = await wait_for_state(app, client, session, FINAL_STATES)
            assert status["state"] == "delivered", status
        for data in files:
            assert orthanc.instance_sha256(sop_instance_uid(data)) == sha256_hex(data)
        assert set(orthanc.received().values()) == {1}
    finally:
        await asyncio.to_thread(orthanc.kill)


async def test_complete_while_instances_are_being_sent_sends_none_twice(
    base: ForwardingBase, tmp_path: Any
) -> None:
    # A slow PACS (0.5 s per instance), one instance per request: `complete` arrives while the
    # early job is mid-study. The final assembly waits for it; the forwarding sends the rest.
    orthanc = RecordingOrthanc(tmp_path / "orthanc", delay=0.5)
    await asyncio.to_thread(orthanc.start)
    study_uid = generate_uid()
    files = series(6, study_uid)
    settings = base.settings(
        **pacs_settings(orthanc),
        forward_while_receiving=True,
        stow_max_batch_instances=1,
        stow_parallel_requests=1,
    )
    try:
        async with running_app(settings) as app, new_client(app) as client:
            user = await sign_in(client, app)
            session = await uploads.start(client, user.headers, files)
            await uploads.send_all(client, session)
            await asyncio.to_thread(orthanc.wait_until_received, 1)
            status = await uploads.complete_and_wait(client, app, session)
            assert status["state"] == "delivered", status
            assert timeline(status) == LIFECYCLE
        assert orthanc.study_instance_count(study_uid) == len(files)
        assert set(orthanc.received().values()) == {1}
        for data in files:
            assert orthanc.instance_sha256(sop_instance_uid(data)) == sha256_hex(data)
    finally:
        await asyncio.to_thread(orthanc.kill)


async def test_the_copy_already_in_the_pacs_stays_when_an_earlier_file_holds_the_instance(
    base: ForwardingBase, orthanc: RecordingOrthanc
) -> None:
    # Two files with one SOP Instance UID and different bytes. Without early forwarding the
    # earlier file keeps it; here the later file's copy reached the PACS first, so the gateway
    # keeps that one: its record must describe what the PACS holds.
    later = instance()
    earlier = with_series_description(later, "ANOTHER COPY")
    assert sop_instance_uid(earlier) == sop_instance_uid(later)
    assert earlier != later
    settings = base.settings(**pacs_settings(orthanc), forward_while_receiving=True)
    async with running_app(settings) as app, new_client(app) as client:
        user = await sign_in(client, app)
        session = await uploads.start(
            client, user.headers, [earlier, later], names=["a.dcm", "b.dcm"]
        )
        await send_file(client, session, 1)
        await status_once(client, session, lambda s: len(_stored(s)) == 1)
        await send_file(client, session, 0)
        status = await uploads.complete_and_wait(client, app, session)
        assert status["state"] == "delivered", status
        assert [f["status"] for f in status["files"]] == ["invalid", "valid"]
        assert "duplicate SOP Instance UID" in status["files"][0]["problems"][0]["reason"]
        [kept] = status["instances"]
        assert kept["file_id"] == session.file_id(1)
        assert status["files"][1]["sha256"] == sha256_hex(later)
    assert orthanc.instance_sha256(sop_instance_uid(later)) == sha256_hex(later)
    assert sum(orthanc.received().values()) == 1
