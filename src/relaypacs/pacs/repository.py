"""All SQL of the forwarding stage: the per-instance PACS outcome on ``dicom_instance`` rows.

Upload rows and their timeline are read and written through ``uploads.repository`` (its row
lock and its ``add_event``, which also publishes the state change); what is here only touches
the forwarding columns (``forward_status``, ``forward_reason``, ``forwarded_at``).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Collection
from datetime import datetime
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from relaypacs.dicom.models import DicomInstance, ForwardStatus
from relaypacs.jobs.models import UNFINISHED_STATES, Job, JobState
from relaypacs.uploads.models import Upload, UploadState

_NO_SYNC: dict[str, Any] = {"synchronize_session": False}
# Bound the IN lists (SQLite allows 32766 parameters; batches are 50 by default).
_IN_BATCH = 500
REASON_LENGTH = 500


async def instances_with_status(
    session: AsyncSession, upload_id: uuid.UUID, status: ForwardStatus
) -> list[DicomInstance]:
    """The upload's instances in one forwarding status, in series and instance order."""
    statement = (
        select(DicomInstance)
        .where(DicomInstance.upload_id == upload_id, DicomInstance.forward_status == status)
        .order_by(
            DicomInstance.series_instance_uid,
            DicomInstance.instance_number,
            DicomInstance.sop_instance_uid,
        )
    )
    return list((await session.scalars(statement)).all())


async def unsent_instances(
    session: AsyncSession, upload_id: uuid.UUID, *, limit: int
) -> list[DicomInstance]:
    """Instances never offered to the PACS (pending, with no outcome or reason recorded), in
    the order they were recorded."""
    statement = (
        select(DicomInstance)
        .where(
            DicomInstance.upload_id == upload_id,
            DicomInstance.forward_status == ForwardStatus.pending,
            DicomInstance.forward_reason.is_(None),
        )
        .order_by(DicomInstance.created_at, DicomInstance.sop_instance_uid)
        .limit(limit)
    )
    return list((await session.scalars(statement)).all())


async def count_by_status(session: AsyncSession, upload_id: uuid.UUID) -> dict[ForwardStatus, int]:
    statement = (
        select(DicomInstance.forward_status, func.count())
        .where(DicomInstance.upload_id == upload_id)
        .group_by(DicomInstance.forward_status)
    )
    counts = dict.fromkeys(ForwardStatus, 0)
    for status, count in (await session.execute(statement)).all():
        counts[ForwardStatus(status)] = int(count)
    return counts


async def stored_uids_by_study(session: AsyncSession, upload_id: uuid.UUID) -> dict[str, set[str]]:
    statement = select(DicomInstance.study_instance_uid, DicomInstance.sop_instance_uid).where(
        DicomInstance.upload_id == upload_id,
        DicomInstance.forward_status == ForwardStatus.stored,
    )
    studies: dict[str, set[str]] = {}
    for study_uid, sop_uid in (await session.execute(statement)).all():
        studies.setdefault(study_uid, set()).add(sop_uid)
    return studies


async def refused_reasons(session: AsyncSession, upload_id: uuid.UUID) -> list[str]:
    """The distinct reasons the upload's refused instances carry (PACS status texts)."""
    statement = (
        select(DicomInstance.forward_reason)
        .where(
            DicomInstance.upload_id == upload_id,
            DicomInstance.forward_status == ForwardStatus.refused,
        )
        .distinct()
    )
    return sorted(reason or "refused" for reason in (await session.scalars(statement)).all())


async def set_outcome(
    session: AsyncSession,
    upload_id: uuid.UUID,
    sop_instance_uids: Collection[str],
    *,
    status: ForwardStatus,
    reason: str | None,
    now: datetime | None,
    only_if: ForwardStatus | None = None,
) -> int:
    """Record one outcome for these instances of the upload; returns the rows changed.

    ``now``: the ``forwarded_at`` to write (None clears it). ``only_if``: change only rows in
    that status (a late "not stored yet" must never undo a "stored").
    """
    changed = 0
    uids = sorted(sop_instance_uids)
    for start in range(0, len(uids), _IN_BATCH):
        conditions = [
            DicomInstance.upload_id == upload_id,
            DicomInstance.sop_instance_uid.in_(uids[start : start + _IN_BATCH]),
        ]
        if only_if is not None:
            conditions.append(DicomInstance.forward_status == only_if)
        statement = (
            update(DicomInstance)
            .where(*conditions)
            .values(
                forward_status=status,
                forward_reason=reason[:REASON_LENGTH] if reason else None,
                forwarded_at=now,
            )
        )
        result = await session.execute(statement, execution_options=_NO_SYNC)
        changed += int(getattr(result, "rowcount", 0) or 0)
    return changed


async def stalled_deliveries(
    session: AsyncSession,
    *,
    states: Collection[UploadState],
    job_key: Callable[[uuid.UUID], str],
    limit: int = 500,
) -> list[tuple[uuid.UUID, str]]:
    """Uploads still waiting for delivery (``states``) whose forwarding job gave up for good
    (``dead``: its workers kept dying; or ``failed`` without failing the upload) and has no
    successor queued or running: (upload id, the job's last error)."""
    uploads = (
        await session.scalars(
            select(Upload.id)
            .where(Upload.state.in_(states))
            .order_by(Upload.updated_at)
            .limit(limit)
        )
    ).all()
    if not uploads:
        return []
    by_key = {job_key(upload_id): upload_id for upload_id in uploads}
    statement = (
        select(Job.dedupe_key, Job.state, Job.last_error)
        .where(Job.dedupe_key.in_(list(by_key)))
        .order_by(Job.created_at)
    )
    latest: dict[str, tuple[JobState, str | None]] = {}
    unfinished: set[str] = set()
    for key, state, error in (await session.execute(statement)).all():
        if key is None:
            continue
        latest[key] = (JobState(state), error)
        if JobState(state) in UNFINISHED_STATES:
            unfinished.add(key)
    return [
        (by_key[key], error or f"the forwarding job is {state.value}")
        for key, (state, error) in latest.items()
        if key not in unfinished and state in (JobState.dead, JobState.failed)
    ]
