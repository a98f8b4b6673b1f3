"""All SQL of reports."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from relaypacs.dicom.models import DicomInstance
from relaypacs.reports.models import Report, ReportStatus
from relaypacs.uploads.models import Upload


async def add_report(session: AsyncSession, report: Report) -> None:
    session.add(report)
    await session.flush()


async def get_by_upload(session: AsyncSession, upload_id: uuid.UUID) -> Report | None:
    return (await session.scalars(select(Report).where(Report.upload_id == upload_id))).first()


async def get_with_upload(
    session: AsyncSession, report_id: uuid.UUID, *, for_update: bool = False
) -> tuple[Report, Upload] | None:
    statement = (
        select(Report, Upload)
        .join(Upload, Upload.id == Report.upload_id)
        .where(Report.id == report_id)
    )
    if for_update:
        statement = statement.with_for_update(of=Report).execution_options(populate_existing=True)
    row = (await session.execute(statement)).first()
    return (row[0], row[1]) if row is not None else None


async def list_reports(
    session: AsyncSession,
    *,
    owner_id: uuid.UUID | None,
    status: ReportStatus | None,
    limit: int,
    offset: int,
) -> tuple[list[tuple[Report, Upload]], int]:
    conditions = []
    if owner_id is not None:
        conditions.append(Report.owner_id == owner_id)
    if status is not None:
        conditions.append(Report.status == status)
    total = int(
        (
            await session.execute(select(func.count()).select_from(Report).where(*conditions))
        ).scalar_one()
    )
    statement = (
        select(Report, Upload)
        .join(Upload, Upload.id == Report.upload_id)
        .where(*conditions)
        .order_by(Report.created_at.desc(), Report.id)
        .limit(limit)
        .offset(offset)
    )
    rows = [(r, u) for r, u in (await session.execute(statement)).all()]
    return rows, total


async def reports_of_owner(
    session: AsyncSession, owner_id: uuid.UUID
) -> list[tuple[Report, Upload]]:
    statement = (
        select(Report, Upload)
        .join(Upload, Upload.id == Report.upload_id)
        .where(Report.owner_id == owner_id)
        .order_by(Report.created_at)
    )
    return [(r, u) for r, u in (await session.execute(statement)).all()]


async def due_for_sync(session: AsyncSession, now: datetime, limit: int) -> list[uuid.UUID]:
    statement = (
        select(Report.id)
        .where(Report.next_sync_at.is_not(None), Report.next_sync_at <= now)
        .where(Report.status != ReportStatus.ready)
        .order_by(Report.next_sync_at)
        .limit(limit)
    )
    return list((await session.scalars(statement)).all())


async def uploaded_identity(
    session: AsyncSession, upload_id: uuid.UUID
) -> tuple[list[str], frozenset[str], frozenset[str]]:
    """The upload's study UIDs (most instances first), then the series and SOP Instance UIDs
    that any upload sent into those studies.

    Whatever reached the PACS through the gateway is never the radiologist's report: not this
    upload's own instances, nor an SR another user's upload put into the same study (which
    would otherwise mark this report ready with text nobody in the reading room wrote).
    """
    mine = select(DicomInstance.study_instance_uid).where(DicomInstance.upload_id == upload_id)
    studies: dict[str, int] = {}
    for (study_uid,) in (await session.execute(mine)).all():
        studies[study_uid] = studies.get(study_uid, 0) + 1
    ordered = sorted(studies, key=lambda uid: -studies[uid])
    if not ordered:
        return [], frozenset(), frozenset()
    sent = select(DicomInstance.series_instance_uid, DicomInstance.sop_instance_uid).where(
        DicomInstance.study_instance_uid.in_(ordered)
    )
    series: set[str] = set()
    instances: set[str] = set()
    for series_uid, sop_uid in (await session.execute(sent)).all():
        series.add(series_uid)
        instances.add(sop_uid)
    return ordered, frozenset(series), frozenset(instances)
