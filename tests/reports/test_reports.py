"""Reports over HTTP on both databases, with the embedded local archive as the PACS."""

from __future__ import annotations

import io
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from pypdf import PdfReader
from sqlalchemy import select

from relaypacs.config import Settings
from relaypacs.reports import service as reports_service
from relaypacs.reports.models import Report
from relaypacs.uploads.models import Upload
from relaypacs.users.models import Role
from tests.reports.documents import structured_report, uids_of
from tests.reports.factories import API, deliver
from tests.support import uploads
from tests.support.accounts import assert_problem, sign_in
from tests.support.dicom_studies import instance
from tests.support.jobs import job_context


async def _notifications(
    client: httpx.AsyncClient, headers: dict[str, str]
) -> list[dict[str, Any]]:
    response = await client.get(f"{API}/notifications?limit=100", headers=headers)
    assert response.status_code == 200
    items: list[dict[str, Any]] = response.json()["items"]
    return items


def pdf_text(content: bytes) -> str:
    return "\n".join(page.extract_text() for page in PdfReader(io.BytesIO(content)).pages)


async def test_a_delivered_study_gets_an_assigned_report_and_the_uploader_is_told(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    owner = await sign_in(client, app)
    delivered = await deliver(client, app, owner, study_description="CT HEAD")

    response = await client.get(f"{API}/reports/{delivered.report_id}", headers=owner.headers)
    assert response.status_code == 200, response.text
    report = response.json()
    assert report["status"] == "assigned"
    assert report["upload_id"] == str(delivered.upload_id)
    assert report["study"]["study_instance_uid"] == delivered.study_uid
    assert report["study"]["study_description"] == "CT HEAD"
    notifications = await _notifications(client, owner.headers)
    assert [n["type"] for n in notifications] == ["upload_complete"]
    assert notifications[0]["report_id"] == str(delivered.report_id)
    # Notification texts name the study, never the patient.
    assert "TEST^PATIENT" not in notifications[0]["body"]

    # The forwarding job may run twice: no second report, no second notification.
    async with app.state.sessionmaker() as session:
        upload = await session.get(Upload, delivered.upload_id)
        assert upload is not None
        again = await reports_service.on_upload_delivered(session, upload)
        await session.commit()
    assert again.id == delivered.report_id
    assert len(await _notifications(client, owner.headers)) == 1


async def test_a_stat_study_is_announced_to_every_radiologist(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    owner = await sign_in(client, app)
    radiologists = [await sign_in(client, app, role=Role.radiologist) for _ in range(2)]
    admin = await sign_in(client, app, role=Role.admin)

    await deliver(client, app, owner, service_level="routine")
    for radiologist in radiologists:
        assert await _notifications(client, radiologist.headers) == []
    stat = await deliver(client, app, owner, service_level="stat")
    for radiologist in radiologists:
        items = await _notifications(client, radiologist.headers)
        assert [(n["type"], n["upload_id"]) for n in items] == [
            ("stat_study_arrived", str(stat.upload_id))
        ]
        assert items[0]["title"] == "STAT study arrived"
    assert await _notifications(client, admin.headers) == []
    emergency = await deliver(client, app, owner, service_level="emergency")
    items = await _notifications(client, radiologists[0].headers)
    assert items[0]["upload_id"] == str(emergency.upload_id)
    assert items[0]["title"] == "Emergency study arrived"


async def test_a_failed_upload_tells_the_uploader_why(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    owner = await sign_in(client, app)
    delivered = await deliver(client, app, owner)
    async with app.state.sessionmaker() as session:
        upload = await session.get(Upload, delivered.upload_id)
        assert upload is not None
        await reports_service.on_upload_failed(
            session, upload, ["PACS refused 2 instances: 0xA700 out of resources"]
        )
        await session.commit()
    failed = (await _notifications(client, owner.headers))[0]
    assert failed["type"] == "upload_failed"
    assert failed["data"]["reasons"] == ["PACS refused 2 instances: 0xA700 out of resources"]
    assert "0xA700" in failed["body"]


async def test_users_see_their_own_reports_and_radiologists_see_all(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    owner = await sign_in(client, app)
    other = await sign_in(client, app)
    radiologist = await sign_in(client, app, role=Role.radiologist)
    mine = await deliver(client, app, owner)
    theirs = await deliver(client, app, other)

    listed = await client.get(f"{API}/reports", headers=owner.headers)
    assert [r["id"] for r in listed.json()["items"]] == [str(mine.report_id)]
    assert listed.json()["total"] == 1
    response = await client.get(f"{API}/reports/{theirs.report_id}", headers=owner.headers)
    assert_problem(response, 404, "report_not_found")
    response = await client.get(f"{API}/reports/{theirs.report_id}/pdf", headers=owner.headers)
    assert_problem(response, 404, "report_not_found")
    response = await client.post(f"{API}/reports/{theirs.report_id}/sync", headers=owner.headers)
    assert_problem(response, 404, "report_not_found")

    everyone = await client.get(
        f"{API}/reports", params={"limit": 100, "status": "assigned"}, headers=radiologist.headers
    )
    ids = {r["id"] for r in everyone.json()["items"]}
    assert {str(mine.report_id), str(theirs.report_id)} <= ids
    item = next(r for r in everyone.json()["items"] if r["id"] == str(mine.report_id))
    assert item["uploaded_at"]
    assert item["study"]["study_description"] == "CT HEAD"


async def test_a_radiologist_moves_a_report_to_ready_and_the_uploader_hears_each_step(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    owner = await sign_in(client, app)
    radiologist = await sign_in(client, app, role=Role.radiologist)
    delivered = await deliver(client, app, owner)
    url = f"{API}/reports/{delivered.report_id}"

    response = await client.patch(url, json={"status": "pending"}, headers=radiologist.headers)
    assert response.status_code == 200, response.text
    assert response.json()["radiologist"] == radiologist.username

    response = await client.patch(
        url, json={"status": "additional_data_required"}, headers=radiologist.headers
    )
    assert_problem(response, 400, "message_required")
    response = await client.patch(
        url,
        json={"status": "additional_data_required", "message": "Send the prior CT from 2023"},
        headers=radiologist.headers,
    )
    assert response.json()["message"] == "Send the prior CT from 2023"

    response = await client.get(f"{url}/pdf", headers=owner.headers)
    assert_problem(response, 409, "report_not_ready")
    response = await client.patch(url, json={"status": "ready"}, headers=radiologist.headers)
    assert_problem(response, 400, "report_text_required")
    assert (await client.get(url, headers=owner.headers)).json()["status"] == (
        "additional_data_required"
    )

    response = await client.patch(
        url,
        json={
            "status": "ready",
            "text": "Findings:\nNo acute intracranial abnormality.",
            "radiologist": "Dr Ada Lovelace",
        },
        headers=radiologist.headers,
    )
    assert response.status_code == 200
    body = response.json()
    assert (body["status"], body["source"], body["radiologist"]) == (
        "ready",
        "manual",
        "Dr Ada Lovelace",
    )
    assert body["ready_at"]
    assert body["message"] is None

    types = [n["type"] for n in await _notifications(client, owner.headers)]
    assert types == [
        "report_ready",
        "additional_data_required",
        "report_assigned",
        "upload_complete",
    ]
    response = await client.get(f"{url}/pdf", headers=owner.headers)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/pdf"
    text = pdf_text(response.content)
    assert "No acute intracranial abnormality." in text
    assert "Dr Ada Lovelace" in text
    # A long UID wraps inside its table cell.
    assert delivered.study_uid in "".join(text.split())
    # The uploader's list names the radiologist too.
    listed = await client.get(f"{API}/reports", params={"status": "ready"}, headers=owner.headers)
    assert [(r["id"], r["radiologist"]) for r in listed.json()["items"]] == [
        (str(delivered.report_id), "Dr Ada Lovelace")
    ]


async def test_only_radiologists_and_admins_change_reports(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    owner = await sign_in(client, app)
    admin = await sign_in(client, app, role=Role.admin)
    delivered = await deliver(client, app, owner)
    url = f"{API}/reports/{delivered.report_id}"
    response = await client.patch(
        url, json={"status": "ready", "text": "self-reported"}, headers=owner.headers
    )
    assert_problem(response, 403, "insufficient_role")
    response = await client.patch(url, json={"status": "finished"}, headers=admin.headers)
    assert_problem(response, 422, "validation_error")
    response = await client.patch(url, json={"text": "x\x00"}, headers=admin.headers)
    assert_problem(response, 422, "validation_error")
    response = await client.patch(
        f"{API}/reports/{uuid.uuid4()}", json={"status": "pending"}, headers=admin.headers
    )
    assert_problem(response, 404, "report_not_found")
    report = (await client.get(url, headers=owner.headers)).json()
    assert (report["status"], report["text"], report["radiologist"]) == ("assigned", None, None)
    assert [n["type"] for n in await _notifications(client, owner.headers)] == ["upload_complete"]


async def test_an_sr_in_the_local_archive_makes_the_report_ready(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    owner = await sign_in(client, app)
    delivered = await deliver(client, app, owner)
    url = f"{API}/reports/{delivered.report_id}"
    synced = await client.post(f"{url}/sync", headers=owner.headers)
    assert synced.status_code == 200, synced.text
    assert synced.json()["status"] == "assigned"
    assert synced.json()["last_synced_at"]

    sr = structured_report(
        delivered.images[0],
        findings="Small left pleural effusion.",
        impression="No pneumothorax.",
        radiologist="Curie^Marie^^Dr",
    )
    study_uid, series_uid, sop_uid, _ = uids_of(sr)
    # The app's own settings: the session-wide app may have been built by another folder's
    # `settings` fixture (tests/uploads overrides it), with another data directory.
    settings: Settings = app.state.settings
    archive = Path(settings.data_dir) / "archive" / study_uid / series_uid
    archive.mkdir(parents=True, exist_ok=True)
    (archive / f"{sop_uid}.dcm").write_bytes(sr)

    synced = await client.post(f"{url}/sync", headers=owner.headers)
    body = synced.json()
    assert (body["status"], body["source"], body["radiologist"]) == (
        "ready",
        "structured_report",
        "Dr Marie Curie",
    )
    assert (
        body["text"] == "Findings:\nSmall left pleural effusion.\n\nImpressions:\nNo pneumothorax."
    )
    notifications = await _notifications(client, owner.headers)
    assert notifications[0]["type"] == "report_ready"
    pdf = await client.get(f"{url}/pdf", headers=owner.headers)
    assert "Small left pleural effusion." in pdf_text(pdf.content)
    async with app.state.sessionmaker() as session:
        report = await session.get(Report, delivered.report_id)
        assert report is not None
        assert report.pacs_sop_instance_uid == sop_uid
        assert report.next_sync_at is None


@pytest.mark.parametrize("action", ["report.viewed", "report.pdf_downloaded", "report.listed"])
async def test_every_read_of_a_report_is_audited(
    client: httpx.AsyncClient, app: FastAPI, action: str
) -> None:
    owner = await sign_in(client, app)
    admin = await sign_in(client, app, role=Role.admin)
    radiologist = await sign_in(client, app, role=Role.radiologist)
    delivered = await deliver(client, app, owner)
    url = f"{API}/reports/{delivered.report_id}"
    await client.patch(
        url, json={"status": "ready", "text": "Normal."}, headers=radiologist.headers
    )
    path = {"report.viewed": url, "report.pdf_downloaded": f"{url}/pdf"}.get(
        action, f"{API}/reports"
    )
    assert (await client.get(path, headers=owner.headers)).status_code == 200
    audit = await client.get(
        f"{API}/admin/audit",
        params={"actor_id": str(owner.id), "action": action},
        headers=admin.headers,
    )
    assert audit.json()["total"] == 1
    if action == "report.listed":  # which reports were seen, not only how many
        assert audit.json()["items"][0]["details"]["ids"] == [str(delivered.report_id)]


@pytest.mark.parametrize("change", [{}, {"status": "ready"}, {"text": "Normal."}])
async def test_a_patch_that_changes_nothing_is_audited_as_a_read(
    client: httpx.AsyncClient, app: FastAPI, change: dict[str, str]
) -> None:
    """The answer shows the report all the same: patient data seen, so an audit row."""
    owner = await sign_in(client, app)
    admin = await sign_in(client, app, role=Role.admin)
    radiologist = await sign_in(client, app, role=Role.radiologist)
    delivered = await deliver(client, app, owner)
    url = f"{API}/reports/{delivered.report_id}"
    ready = {"status": "ready", "text": "Normal."}
    assert (await client.patch(url, json=ready, headers=radiologist.headers)).status_code == 200
    response = await client.patch(url, json=change, headers=radiologist.headers)
    assert response.status_code == 200
    assert response.json()["text"] == "Normal."
    audit = await client.get(
        f"{API}/admin/audit",
        params={"actor_id": str(radiologist.id), "action": "report.viewed"},
        headers=admin.headers,
    )
    assert audit.json()["total"] == 1
    updates = await client.get(
        f"{API}/admin/audit",
        params={"actor_id": str(radiologist.id), "action": "report.updated"},
        headers=admin.headers,
    )
    assert updates.json()["total"] == 1  # the first PATCH only


async def test_the_personal_data_export_holds_reports_and_notifications(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    owner = await sign_in(client, app)
    delivered = await deliver(client, app, owner)
    export = await client.get(f"{API}/users/me/export", headers=owner.headers)
    assert export.status_code == 200
    sections = export.json()["sections"]
    assert [r["id"] for r in sections["reports"]] == [str(delivered.report_id)]
    assert [n["type"] for n in sections["notifications"]] == ["upload_complete"]


async def test_an_upload_rejected_in_validation_tells_the_uploader(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    owner = await sign_in(client, app)
    session = await uploads.start(client, owner.headers, [b"hello, not DICOM"], names=["notes.txt"])
    await uploads.send_all(client, session)
    status = await uploads.complete_and_wait(client, app, session)
    assert status["state"] == "rejected"
    notes = await _notifications(client, owner.headers)
    assert [(n["type"], n["upload_id"]) for n in notes] == [("upload_failed", session.id)]


async def test_an_upload_whose_stored_chunk_went_bad_fails_and_tells_the_uploader(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    owner = await sign_in(client, app)
    session = await uploads.start(client, owner.headers, [instance()])
    await uploads.send_all(client, session)
    # Damaged at rest, after its MD5 was checked on arrival: assembly checks it again.
    settings = app.state.settings
    chunk = (
        settings.data_dir / "chunks" / "uploads" / session.id / "chunks" / session.file_id(0)
    ) / "00000000"
    damaged = bytearray(chunk.read_bytes())
    damaged[-1] ^= 0xFF
    chunk.write_bytes(bytes(damaged))
    status = await uploads.complete_and_wait(client, app, session)
    assert status["state"] == "failed"
    notes = await _notifications(client, owner.headers)
    assert [(n["type"], n["upload_id"]) for n in notes] == [("upload_failed", session.id)]
    assert "does not match its checksum" in notes[0]["body"]


def _a_cut_pydicom_chokes_on(document: bytes) -> int:
    """Where cutting ``document`` makes pydicom raise something other than its usual errors."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    for cut in range(200, len(document)):
        try:
            pydicom.dcmread(io.BytesIO(document[:cut]), force=True)
        except (InvalidDicomError, ValueError, EOFError):
            continue
        except Exception:  # the kind pydicom raises is what we look for
            return cut
    raise AssertionError("pydicom read every cut")


async def test_a_damaged_report_in_the_pacs_does_not_stop_the_sync_of_the_others(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    from datetime import timedelta

    from sqlalchemy import update

    from relaypacs.db.base import utcnow
    from relaypacs.reports.tasks import sync_due_reports

    owner = await sign_in(client, app)
    damaged, fine = await deliver(client, app, owner), await deliver(client, app, owner)
    settings: Settings = app.state.settings
    for delivered, cut in ((damaged, True), (fine, False)):
        sr = structured_report(
            delivered.images[0], findings="Clear lungs.", impression="Normal.", radiologist="A^B"
        )
        study_uid, series_uid, sop_uid, _ = uids_of(sr)
        folder = Path(settings.data_dir) / "archive" / study_uid / series_uid
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{sop_uid}.dcm").write_bytes(sr[: _a_cut_pydicom_chokes_on(sr)] if cut else sr)
    async with app.state.sessionmaker() as session:
        # First in line, the damaged one first: other tests' reports may be due too.
        for report_id, days in ((damaged.report_id, 2), (fine.report_id, 1)):
            await session.execute(
                update(Report)
                .where(Report.id == report_id)
                .values(next_sync_at=utcnow() - timedelta(days=days))
            )
        await session.commit()
    await sync_due_reports(job_context(app, "reports.sync"), {})

    ready = (await client.get(f"{API}/reports/{fine.report_id}", headers=owner.headers)).json()
    assert ready["status"] == "ready"
    async with app.state.sessionmaker() as session:
        report = await session.get(Report, damaged.report_id)
        assert report is not None
        assert report.status.value == "assigned"
        assert report.next_sync_at is not None
        assert report.next_sync_at > utcnow()


async def test_an_sr_another_upload_sent_into_the_study_is_not_its_report(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    from relaypacs.dicom.models import DicomInstance, ForwardStatus

    owner, other = await sign_in(client, app), await sign_in(client, app)
    delivered = await deliver(client, app, owner)
    theirs = await deliver(client, app, other)
    # The other user's upload carried an SR into the owner's study, and the gateway delivered
    # it to the PACS like any instance: it is not the reading room's report.
    sr = structured_report(
        delivered.images[0], findings="Written by someone else.", impression="-", radiologist="X^Y"
    )
    study_uid, series_uid, sop_uid, sop_class = uids_of(sr)
    settings: Settings = app.state.settings
    folder = Path(settings.data_dir) / "archive" / study_uid / series_uid
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{sop_uid}.dcm").write_bytes(sr)
    async with app.state.sessionmaker() as session:
        upload = await session.get(Upload, theirs.upload_id)
        assert upload is not None
        first = (
            await session.execute(
                select(DicomInstance.file_id).where(DicomInstance.upload_id == upload.id)
            )
        ).first()
        assert first is not None
        session.add(
            DicomInstance(
                upload_id=upload.id,
                file_id=first[0],
                sop_class_uid=sop_class,
                sop_instance_uid=sop_uid,
                study_instance_uid=study_uid,
                series_instance_uid=series_uid,
                transfer_syntax_uid="1.2.840.10008.1.2.1",
                modality="SR",
                size=len(sr),
                sha256="0" * 64,
                store_key=f"test/{sop_uid}",
                forward_status=ForwardStatus.stored,
            )
        )
        await session.commit()

    synced = await client.post(f"{API}/reports/{delivered.report_id}/sync", headers=owner.headers)
    assert synced.status_code == 200, synced.text
    assert synced.json()["status"] == "assigned"
    assert synced.json()["text"] is None
