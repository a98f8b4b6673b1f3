"""Keeps ``upload_stat`` in step with uploads, their timelines and reports.

Every state change of an upload writes a timeline row (``upload_event``); a report becoming
ready changes its ``report`` row. A session hook notes the uploads those rows belong to and,
just before the transaction commits, rewrites their ``upload_stat`` rows from the source tables
in the same transaction, so the figures never disagree with a committed state. The hourly
``analytics.reconcile`` job repairs any row a change made outside these hooks left behind.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, delete, event, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, UOWTransaction

from relaypacs.analytics.models import RolledDay, UploadStat
from relaypacs.reports.models import Report
from relaypacs.uploads.models import Upload, UploadEvent, UploadState

_TOUCHED = "relaypacs.analytics.touched"
DELIVERED_STATES = (UploadState.delivered, UploadState.partially_delivered)
_BATCH = 500


@event.listens_for(Session, "after_flush")
def _note_changes(session: Session, _: UOWTransaction) -> None:
    touched: set[uuid.UUID] | None = None
    for instance in (*session.new, *session.dirty):
        if isinstance(instance, (UploadEvent, Report)):
            if touched is None:
                touched = session.info.setdefault(_TOUCHED, set())
            touched.add(instance.upload_id)


@event.listens_for(Session, "before_commit")
def _refresh_touched(session: Session) -> None:
    if not session.info.get(_TOUCHED) and not (session.new or session.dirty):
        return
    session.flush()
    touched: set[uuid.UUID] = session.info.pop(_TOUCHED, set())
    if touched:
        refresh_sync(session.connection(), sorted(touched))


@event.listens_for(Session, "after_soft_rollback")
def _forget(session: Session, previous_transaction: object) -> None:
    if not session.in_transaction():
        session.info.pop(_TOUCHED, None)


def refresh_sync(connection: Connection, upload_ids: Sequence[uuid.UUID]) -> int:
    """Rewrite the ``upload_stat`` rows of these uploads from the source tables."""
    written = 0
    for start in range(0, len(upload_ids), _BATCH):
        written += _refresh_batch(connection, list(upload_ids[start : start + _BATCH]))
    return written


def _refresh_batch(connection: Connection, ids: list[uuid.UUID]) -> int:
    uploads = connection.execute(
        select(
            Upload.id,
            Upload.owner_id,
            Upload.created_at,
            Upload.modality,
            Upload.service_level,
            Upload.state,
            Upload.total_bytes,
            Upload.file_count,
        ).where(Upload.id.in_(ids))
    ).all()
    if not uploads:
        return 0
    delivered = _by_upload(
        connection.execute(
            select(UploadEvent.upload_id, func.min(UploadEvent.at))
            .where(UploadEvent.upload_id.in_(ids), UploadEvent.state.in_(DELIVERED_STATES))
            .group_by(UploadEvent.upload_id)
        ).all()
    )
    ready = _by_upload(
        connection.execute(
            select(Report.upload_id, Report.ready_at).where(
                Report.upload_id.in_(ids), Report.ready_at.is_not(None)
            )
        ).all()
    )
    rows: list[dict[str, Any]] = []
    for upload_id, owner_id, created_at, modality, level, state, total, files in uploads:
        rows.append(
            {
                "upload_id": upload_id,
                "owner_id": owner_id,
                "created_at": created_at,
                "day": created_at.astimezone(UTC).date(),
                "modality": modality,
                "service_level": getattr(level, "value", level),
                "state": getattr(state, "value", state),
                "total_bytes": total,
                "file_count": files,
                "seconds_to_pacs": _seconds(created_at, delivered.get(upload_id)),
                "seconds_to_report": _seconds(created_at, ready.get(upload_id)),
            }
        )
    module: Any = postgresql if connection.dialect.name == "postgresql" else sqlite
    statement = module.insert(UploadStat)
    updated = {c: statement.excluded[c] for c in rows[0] if c != "upload_id"}
    connection.execute(
        statement.on_conflict_do_update(index_elements=["upload_id"], set_=updated), rows
    )
    # A sealed day whose upload changed (a requeue, a late report) is read live again until the
    # roll-up seals it anew. Today's and yesterday's changes never touch the roll-up.
    newest_sealable = last_sealable_day(datetime.now(UTC).date())
    unsealed = sorted({row["day"] for row in rows if row["day"] <= newest_sealable})
    if unsealed:
        connection.execute(delete(RolledDay).where(RolledDay.day.in_(unsealed)))
    return len(rows)


#: Days this many days old or older can be sealed by the roll-up (time zones and late
#: transitions keep the two most recent UTC days moving).
SEAL_AFTER_DAYS = 2


def last_sealable_day(today: date) -> date:
    return today - timedelta(days=SEAL_AFTER_DAYS)


def _by_upload(pairs: Iterable[Any]) -> dict[uuid.UUID, datetime]:
    found: dict[uuid.UUID, datetime] = {}
    for upload_id, at in pairs:
        if isinstance(at, str):
            # SQLite hands an aggregate back untyped.
            at = datetime.fromisoformat(at).replace(tzinfo=UTC)
        if at is not None:
            found[upload_id] = at if at.tzinfo else at.replace(tzinfo=UTC)
    return found


def _seconds(start: datetime, end: datetime | None) -> float | None:
    if end is None:
        return None
    return max(0.0, (end - start).total_seconds())
