"""Reports: created when a study is delivered, read from the PACS, set by radiologists.

Interfaces for the forwarding stage (both join the caller's transaction; nothing here commits):

- :func:`on_upload_delivered` — the report record (``assigned``), ``upload_complete`` for the
  uploader and, for a STAT or emergency study, ``stat_study_arrived`` for every radiologist;
- :func:`on_upload_failed` — ``upload_failed`` for the uploader, with the reasons.

Notification texts name the study by modality, description and date, never by patient.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import anyio
import structlog
from fastapi import Request
from sqlalchemy.ext.asyncio import AsyncSession

from relaypacs.audit.service import record_audit
from relaypacs.config import Settings
from relaypacs.db.base import utcnow
from relaypacs.notifications import repository as notifications_repository
from relaypacs.notifications.models import NotificationType
from relaypacs.notifications.service import notify
from relaypacs.reports import repository
from relaypacs.reports.exceptions import (
    MessageRequired,
    PacsUnavailable,
    ReportNotFound,
    ReportNotReady,
    ReportTextRequired,
)
from relaypacs.reports.models import Report, ReportSource, ReportStatus
from relaypacs.reports.pacs import (
    ENCAPSULATED_PDF,
    FoundReport,
    InstanceRef,
    ReportSourceError,
    encapsulated_pdf,
    find_report,
)
from relaypacs.reports.pacs import (
    ReportSource as PacsReportSource,
)
from relaypacs.reports.schemas import ReportOut, ReportSummary, ReportUpdate, StudyOut
from relaypacs.uploads.models import Upload, UploadState
from relaypacs.users.models import Role, ServiceLevel, User

log = structlog.get_logger(__name__)

READERS = frozenset({Role.radiologist, Role.admin})
_URGENT = {ServiceLevel.stat: "STAT", ServiceLevel.emergency: "Emergency"}


def study_label(upload: Upload) -> str:
    description = f" {upload.study_description}" if upload.study_description else ""
    return f"{upload.modality}{description} of {upload.study_date.isoformat()}"


# --- interfaces for the forwarding stage -------------------------------------------------------


async def on_upload_delivered(session: AsyncSession, upload: Upload) -> Report:
    """Create the study's report (``assigned``) and tell the people who need to know.

    Idempotent: a second call for the same upload returns the existing report and notifies
    nobody again (a job handler may run twice).
    """
    existing = await repository.get_by_upload(session, upload.id)
    if existing is not None:
        return existing
    study_uids, _, _ = await repository.uploaded_identity(session, upload.id)
    now = utcnow()
    report = Report(
        id=uuid.uuid4(),
        upload_id=upload.id,
        owner_id=upload.owner_id,
        status=ReportStatus.assigned,
        study_instance_uid=study_uids[0] if study_uids else None,
        created_at=now,
        updated_at=now,
        delivered_at=now,
        # The first look at the PACS happens at the next sync tick.
        next_sync_at=now,
    )
    await repository.add_report(session, report)
    label = study_label(upload)
    partial = upload.state is UploadState.partially_delivered
    await notify(
        session,
        upload.owner_id,
        NotificationType.upload_complete,
        title="Study partly delivered to the PACS" if partial else "Study delivered to the PACS",
        body=(
            f"{label}: some instances were refused by the PACS; the upload shows why."
            if partial
            else f"{label} is in the PACS ({upload.instance_count} instances)."
        ),
        upload_id=upload.id,
        report_id=report.id,
        data={"state": upload.state.value, "instance_count": upload.instance_count},
    )
    urgency = _URGENT.get(upload.service_level)
    if urgency is not None:
        for radiologist_id in await notifications_repository.active_radiologist_ids(session):
            await notify(
                session,
                radiologist_id,
                NotificationType.stat_study_arrived,
                title=f"{urgency} study arrived",
                body=f"{label} is waiting to be read.",
                upload_id=upload.id,
                report_id=report.id,
                data={"service_level": upload.service_level.value},
            )
    return report


async def on_upload_failed(session: AsyncSession, upload: Upload, reasons: Sequence[str]) -> None:
    """Tell the uploader that the study could not be delivered, and why.

    ``reasons``: written by our code (PACS status texts, validation codes); no patient data.
    """
    shown = [r[:300] for r in reasons][:10]
    summary = "; ".join(shown) if shown else "see the upload for details"
    await notify(
        session,
        upload.owner_id,
        NotificationType.upload_failed,
        title="Study not delivered",
        body=f"{study_label(upload)} could not be delivered: {summary}"[:2000],
        upload_id=upload.id,
        data={"state": upload.state.value, "reasons": shown},
    )


# --- views -------------------------------------------------------------------------------------


def _study(report: Report, upload: Upload) -> StudyOut:
    return StudyOut(
        patient_name=upload.patient_name,
        patient_id=upload.patient_id,
        study_date=upload.study_date,
        modality=upload.modality,
        service_level=upload.service_level,
        study_description=upload.study_description,
        study_instance_uid=report.study_instance_uid,
    )


def summary(report: Report, upload: Upload) -> ReportSummary:
    return ReportSummary(
        id=report.id,
        upload_id=report.upload_id,
        owner_id=report.owner_id,
        status=report.status,
        study=_study(report, upload),
        uploaded_at=upload.created_at,
        delivered_at=report.delivered_at,
        radiologist=report.radiologist_name,
        updated_at=report.updated_at,
        ready_at=report.ready_at,
    )


def detail(report: Report, upload: Upload) -> ReportOut:
    return ReportOut(
        **summary(report, upload).model_dump(),
        text=report.text,
        message=report.message,
        source=report.source,
        has_pacs_pdf=report.pdf_sop_instance_uid is not None,
        last_synced_at=report.last_synced_at,
        sync_error=report.sync_error,
    )


async def get_visible(
    session: AsyncSession, user: User, report_id: uuid.UUID, *, for_update: bool = False
) -> tuple[Report, Upload]:
    found = await repository.get_with_upload(session, report_id, for_update=for_update)
    if found is None or (user.role not in READERS and found[0].owner_id != user.id):
        # Someone else's report is as unknown as a missing one.
        raise ReportNotFound()
    return found


async def list_reports(
    session: AsyncSession,
    user: User,
    *,
    status: ReportStatus | None,
    limit: int,
    offset: int,
) -> tuple[list[tuple[Report, Upload]], int]:
    return await repository.list_reports(
        session,
        owner_id=None if user.role in READERS else user.id,
        status=status,
        limit=limit,
        offset=offset,
    )


async def audit_read(
    session: AsyncSession,
    request: Request | None,
    user: User,
    action: str,
    report_id: uuid.UUID | None,
    details: dict[str, Any] | None = None,
) -> None:
    await record_audit(
        session,
        action,
        request=request,
        actor_id=user.id,
        target_type="report",
        target_id=str(report_id) if report_id else None,
        details=details,
    )


# --- radiologists' changes ---------------------------------------------------------------------


async def update_report(
    session: AsyncSession,
    radiologist: User,
    report_id: uuid.UUID,
    change: ReportUpdate,
    *,
    request: Request | None,
) -> tuple[Report, Upload]:
    report, upload = await get_visible(session, radiologist, report_id, for_update=True)
    now = utcnow()
    changed: list[str] = []
    if change.radiologist is not None and change.radiologist != report.radiologist_name:
        report.radiologist_name = change.radiologist
        changed.append("radiologist")
    if change.text is not None and change.text != report.text:
        report.text = change.text
        changed.append("text")
    new_status = ReportStatus(change.status) if change.status else None
    if new_status is ReportStatus.additional_data_required and not change.message:
        raise MessageRequired()
    if new_status is ReportStatus.ready and not (change.text or report.text):
        raise ReportTextRequired()
    if new_status is not None and new_status is not report.status:
        await _set_status(session, report, upload, radiologist, new_status, change.message, now)
        changed.append("status")
    elif new_status is ReportStatus.additional_data_required and change.message != report.message:
        # A new request for the same status is news to the uploader too.
        await _set_status(session, report, upload, radiologist, new_status, change.message, now)
        changed.append("message")
    if changed:
        report.updated_at = now
        await session.flush()
        await record_audit(
            session,
            "report.updated",
            request=request,
            actor_id=radiologist.id,
            target_type="report",
            target_id=str(report.id),
            details={"changed": changed, "status": report.status.value},
        )
    else:
        # Nothing changed, but the answer still shows the report (patient data): a read.
        await audit_read(session, request, radiologist, "report.viewed", report.id)
    return report, upload


async def _set_status(
    session: AsyncSession,
    report: Report,
    upload: Upload,
    radiologist: User,
    status: ReportStatus,
    message: str | None,
    now: datetime,
) -> None:
    report.status = status
    if report.radiologist_id is None or status is not ReportStatus.additional_data_required:
        report.radiologist_id = radiologist.id
    if report.radiologist_name is None:
        report.radiologist_name = radiologist.username
    label = study_label(upload)
    if status is ReportStatus.pending:
        report.message = None
        report.ready_at = None
        await notify(
            session,
            report.owner_id,
            NotificationType.report_assigned,
            title="A radiologist is reading your study",
            body=f"{label} is being reported by {report.radiologist_name}.",
            upload_id=upload.id,
            report_id=report.id,
        )
    elif status is ReportStatus.additional_data_required:
        report.message = message
        report.ready_at = None
        await notify(
            session,
            report.owner_id,
            NotificationType.additional_data_required,
            title="The radiologist needs more information",
            body=f"{label}: {message}",
            upload_id=upload.id,
            report_id=report.id,
        )
    else:
        report.message = None
        report.ready_at = now
        report.source = ReportSource.manual
        report.next_sync_at = None
        await _notify_ready(session, report, upload)


async def _notify_ready(session: AsyncSession, report: Report, upload: Upload) -> None:
    await notify(
        session,
        report.owner_id,
        NotificationType.report_ready,
        title="Report ready",
        body=f"The report of {study_label(upload)} is ready.",
        upload_id=upload.id,
        report_id=report.id,
        data={"source": report.source.value if report.source else None},
    )


# --- the PACS ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class SyncOutcome:
    became_ready: bool
    error: str | None = None


@dataclass(frozen=True)
class Lookup:
    """What the PACS said about a study, gathered with no transaction open (a slow PACS must
    not hold a row lock, nor SQLite's single write lock)."""

    found: FoundReport | None
    error: str | None


async def look_up(
    session: AsyncSession, report: Report, upload: Upload, sources: Sequence[PacsReportSource]
) -> Lookup:
    """Read what identifies the study, end the transaction, then ask the PACS."""
    study_uids, series, instances = await repository.uploaded_identity(session, upload.id)
    if report.study_instance_uid and report.study_instance_uid not in study_uids:
        study_uids.insert(0, report.study_instance_uid)
    await session.commit()
    try:
        found = await find_report(
            sources, study_uids, uploaded_series=series, uploaded_instances=instances
        )
    except ReportSourceError as exc:
        return Lookup(None, exc.reason)
    return Lookup(found, None)


async def record_lookup(
    session: AsyncSession, report: Report, upload: Upload, lookup: Lookup, settings: Settings
) -> SyncOutcome:
    """Apply a lookup to the (locked, freshly read) report; ``ready`` and notify when the PACS
    has the report."""
    now = utcnow()
    report.last_synced_at = now
    found = lookup.found
    if lookup.error is not None:
        report.sync_error = lookup.error[:300]
        report.next_sync_at = _next_sync(report, now, settings)
        await session.flush()
        return SyncOutcome(False, lookup.error)
    report.sync_error = None
    if found is None or (found.structured_report is None and found.pdf is None):
        report.next_sync_at = _next_sync(report, now, settings)
        await session.flush()
        return SyncOutcome(False)
    if report.status is ReportStatus.ready:
        # Already set by hand: keep the radiologist's text, add the PACS's PDF.
        _remember_pdf(report, found)
        report.next_sync_at = None
        await session.flush()
        return SyncOutcome(False)
    _apply(report, found, now)
    await session.flush()
    await _notify_ready(session, report, upload)
    log.info("report_ready_from_pacs", report_id=str(report.id), destination=found.destination)
    return SyncOutcome(True)


def _remember_pdf(report: Report, found: FoundReport) -> None:
    if found.pdf is not None:
        report.pdf_series_instance_uid = found.pdf.series_instance_uid
        report.pdf_sop_instance_uid = found.pdf.sop_instance_uid
        report.pacs_destination = report.pacs_destination or found.destination


def _apply(report: Report, found: FoundReport, now: datetime) -> None:
    primary: InstanceRef | None = found.structured_report or found.pdf
    assert primary is not None
    report.status = ReportStatus.ready
    report.ready_at = now
    report.updated_at = now
    report.next_sync_at = None
    report.message = None
    report.source = (
        ReportSource.structured_report
        if found.structured_report is not None
        else ReportSource.encapsulated_pdf
    )
    report.pacs_destination = found.destination
    report.pacs_series_instance_uid = primary.series_instance_uid
    report.pacs_sop_instance_uid = primary.sop_instance_uid
    report.pacs_sop_class_uid = primary.sop_class_uid
    if found.radiologist:
        report.radiologist_name = found.radiologist[:200]
    if found.text:
        report.text = found.text
    _remember_pdf(report, found)


def _next_sync(report: Report, now: datetime, settings: Settings) -> datetime | None:
    if now - report.delivered_at > timedelta(days=settings.report_sync_max_days):
        return None
    return now + timedelta(seconds=settings.report_sync_seconds)


async def sync_now(
    session: AsyncSession,
    user: User,
    report_id: uuid.UUID,
    sources: Sequence[PacsReportSource],
    settings: Settings,
    *,
    request: Request | None,
) -> tuple[Report, Upload]:
    report, upload = await get_visible(session, user, report_id)
    if report.status is not ReportStatus.ready or report.pdf_sop_instance_uid is None:
        lookup = await look_up(session, report, upload, sources)
        if lookup.error is not None:
            raise PacsUnavailable(lookup.error)
        report, upload = await get_visible(session, user, report_id, for_update=True)
        await record_lookup(session, report, upload, lookup, settings)
    await audit_read(session, request, user, "report.synced", report.id)
    return report, upload


async def pacs_pdf(report: Report, sources: Sequence[PacsReportSource]) -> bytes | None:
    """The PACS's own PDF of the report, when it has one (None: make one)."""
    if report.pdf_sop_instance_uid is None or report.study_instance_uid is None:
        return None
    source = next((s for s in sources if s.name == report.pacs_destination), None)
    if source is None:
        return None
    ref = InstanceRef(
        report.study_instance_uid,
        report.pdf_series_instance_uid or "",
        report.pdf_sop_instance_uid,
        ENCAPSULATED_PDF,
    )
    try:
        data = await source.retrieve(ref)
        return await anyio.to_thread.run_sync(encapsulated_pdf, data)
    except ReportSourceError as exc:
        if report.text is None:
            # The PDF is the report: without it there is nothing to show.
            raise PacsUnavailable(exc.reason) from exc
        log.warning("report_pdf_fallback", report_id=str(report.id), reason=exc.reason)
        return None


def ensure_ready(report: Report) -> None:
    if report.status is not ReportStatus.ready:
        raise ReportNotReady(
            f"The report is {report.status.value}", report_status=report.status.value
        )


async def export_section(session: AsyncSession, user: User) -> list[dict[str, Any]]:
    """The user's reports for ``GET /users/me/export``."""
    return [
        detail(report, upload).model_dump(mode="json")
        for report, upload in await repository.reports_of_owner(session, user.id)
    ]
