"""All SQL of the forwarding stage: the per-instance PACS outcome on ``dicom_instance`` rows.

Upload rows and their timeline are read and written through ``uploads.repository`` (its row
lock and its ``add_event``, which also publishes the state change); what is here only touches
the forwarding columns (``forward_status``, ``forward_reason``, ``forwarded_at``).
"""

from __future__ import annotations

import uuid
from collections.abc import Collection
from datetime import datetime
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from relaypacs.dicom.models import DicomInstance, ForwardStatus

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


async def resend_refused(session: AsyncSession, upload_id: uuid.UUID) -> int:
    """The upload's refused instances wait to be sent again (an admin's requeue, once the PACS
    side is put right); returns how many."""
    statement = (
        update(DicomInstance)
        .where(
            DicomInstance.upload_id == upload_id,
            DicomInstance.forward_status == ForwardStatus.refused,
        )
        .values(forward_status=ForwardStatus.pending, forward_reason=None, forwarded_at=None)
    )
    result = await session.execute(statement, execution_options=_NO_SYNC)
    return int(getattr(result, "rowcount", 0) or 0)


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
