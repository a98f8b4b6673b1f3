"""Delivered studies for report tests: an upload started over HTTP, then taken to `delivered`
the way the forwarding stage does (instances recorded, state changed, on_upload_delivered)."""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass
from typing import Any

import httpx
from fastapi import FastAPI
from pydicom.uid import generate_uid
from sqlalchemy import select

from relaypacs.db.base import utcnow
from relaypacs.dicom.models import DicomInstance, ForwardStatus
from relaypacs.reports import service as reports_service
from relaypacs.uploads import repository as uploads_repository
from relaypacs.uploads.models import Upload, UploadFile, UploadState
from tests.reports.documents import PATIENT_ID, ct_image, uids_of
from tests.support.accounts import SignedIn
from tests.support.uploads import study

API = "/api/v1"


@dataclass(frozen=True)
class DeliveredStudy:
    upload_id: uuid.UUID
    report_id: uuid.UUID
    study_uid: str
    series_uid: str
    images: list[bytes]


async def start_upload(
    client: httpx.AsyncClient, owner: SignedIn, **study_fields: Any
) -> uuid.UUID:
    response = await client.post(
        f"{API}/uploads",
        json={
            "study": study(patient_id=PATIENT_ID, **study_fields),
            "files": [{"name": "image.dcm", "size": 1000}],
        },
        headers=owner.headers,
    )
    assert response.status_code == 201, response.text
    return uuid.UUID(response.json()["upload_id"])


async def deliver(
    client: httpx.AsyncClient,
    app: FastAPI,
    owner: SignedIn,
    *,
    images: int = 2,
    state: UploadState = UploadState.delivered,
    **study_fields: Any,
) -> DeliveredStudy:
    upload_id = await start_upload(client, owner, **study_fields)
    study_uid, series_uid = generate_uid(), generate_uid()
    files = [ct_image(study_uid, series_uid) for _ in range(images)]
    async with app.state.sessionmaker() as session:
        upload = (await session.scalars(select(Upload).where(Upload.id == upload_id))).one()
        upload_file = (
            await session.scalars(select(UploadFile).where(UploadFile.upload_id == upload_id))
        ).one()
        for data in files:
            _, _, sop_uid, sop_class = uids_of(data)
            session.add(
                DicomInstance(
                    upload_id=upload_id,
                    file_id=upload_file.id,
                    sop_class_uid=sop_class,
                    sop_instance_uid=sop_uid,
                    study_instance_uid=study_uid,
                    series_instance_uid=series_uid,
                    transfer_syntax_uid="1.2.840.10008.1.2.1",
                    modality="CT",
                    size=len(data),
                    sha256=hashlib.sha256(data).hexdigest(),
                    store_key=f"test/{sop_uid}",
                    forward_status=ForwardStatus.stored,
                    forwarded_at=utcnow(),
                )
            )
        upload.state = state
        upload.instance_count = images
        await uploads_repository.add_event(session, upload_id, state)
        report = await reports_service.on_upload_delivered(session, upload)
        await session.commit()
        return DeliveredStudy(upload_id, report.id, study_uid, series_uid, files)
