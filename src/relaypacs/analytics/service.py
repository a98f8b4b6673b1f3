"""Analytics (summary, daily trends, CSV export) and the admin's view of uploads.

Users see figures of their own uploads; admins see everyone's and may narrow them to one user,
modality or service level. Nothing here commits.
"""

from __future__ import annotations

import asyncio
import csv
import io
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from datetime import date, datetime, timedelta
from typing import Any, TypeVar

from fastapi import Request
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from relaypacs.analytics import repository
from relaypacs.analytics.exceptions import UploadNotFound, UploadNotRequeueable
from relaypacs.analytics.repository import DurationStats, Filters
from relaypacs.analytics.schemas import (
    PERIOD_DAYS,
    Durations,
    ModalityShare,
    Period,
    Scope,
    ServiceLevelShare,
    StatTurnaround,
    Summary,
    Volume,
)
from relaypacs.audit.service import record_audit
from relaypacs.auth.exceptions import InsufficientRole
from relaypacs.db.base import utcnow
from relaypacs.jobs import service as jobs_service
from relaypacs.jobs.models import Job
from relaypacs.pacs import repository as pacs_repository
from relaypacs.uploads import repository as uploads_repository
from relaypacs.uploads import service as uploads_service
from relaypacs.uploads.models import Upload, UploadState
from relaypacs.users.models import Role, ServiceLevel, User

T = TypeVar("T")

#: Outcomes of the product's one job, getting a study into the PACS. An upload whose session
#: expired before it completed did not get there (the network kept dropping, most likely): it
#: counts against the success rate, as in the Prometheus rule. Only a cancel is the user's choice.
FINISHED_STATES = frozenset(
    {
        UploadState.delivered,
        UploadState.partially_delivered,
        UploadState.failed,
        UploadState.rejected,
        UploadState.expired,
    }
)
DELIVERED = frozenset({UploadState.delivered, UploadState.partially_delivered})
#: A daily series never spans more than this, whatever ``all`` covers.
MAX_TREND_DAYS = 3660


def cache_key(kind: str, scope: Scope) -> tuple[object, ...]:
    return (kind, scope.user_id, scope.period, scope.modality, scope.service_level, scope.since)


def scope_for(
    user: User,
    period: Period,
    *,
    user_id: uuid.UUID | None,
    modality: str | None,
    service_level: ServiceLevel | None,
) -> tuple[Scope, Filters]:
    if user.role is not Role.admin:
        if user_id is not None and user_id != user.id:
            raise InsufficientRole("Only admins see other users' figures")
        user_id = user.id
    now = utcnow()
    days = PERIOD_DAYS.get(period)
    since = None
    if days is not None:
        # Whole UTC days: today and the days before it.
        since = datetime.combine(
            now.date() - timedelta(days=days - 1), datetime.min.time(), now.tzinfo
        )
    modality = modality.upper() if modality else None
    scope = Scope(
        period=period,
        since=since,
        until=now,
        user_id=user_id,
        modality=modality,
        service_level=service_level,
    )
    return scope, Filters(since, user_id, modality, service_level)


def _durations(stats: DurationStats | None) -> Durations:
    if stats is None:
        return Durations(count=0, median_seconds=None, p95_seconds=None)
    return Durations(count=stats.count, median_seconds=stats.median, p95_seconds=stats.p95)


async def summary(
    sessionmaker: async_sessionmaker[AsyncSession], scope: Scope, filters: Filters
) -> Summary:
    """Computed in sessions of its own (the result may be shared by concurrent requests)."""
    stat_filters = Filters(filters.since, filters.owner_id, filters.modality, ServiceLevel.stat)
    no_stat = filters.service_level not in (None, ServiceLevel.stat)

    async def stat_report_of(session: AsyncSession) -> DurationStats:
        if no_stat:
            return DurationStats(0, None, None)
        return await repository.time_to_report(session, stat_filters)

    if sessionmaker.kw["bind"].dialect.name == "postgresql":
        # Three independent scans: on PostgreSQL they run at once, each on a connection.
        rows, (overall, by_level), stat_report = await asyncio.gather(
            _in_session(sessionmaker, lambda s: repository.counts(s, filters)),
            _in_session(sessionmaker, lambda s: repository.time_to_pacs(s, filters)),
            _in_session(sessionmaker, stat_report_of),
        )
    else:
        # SQLite: every transaction takes the one write lock; one session, one after another.
        async with sessionmaker() as session:
            rows = await repository.counts(session, filters)
            overall, by_level = await repository.time_to_pacs(session, filters)
            stat_report = await stat_report_of(session)

    outcomes: dict[str, int] = {state.value: 0 for state in UploadState}
    modalities: dict[str, list[int]] = {}
    levels: dict[ServiceLevel, list[int]] = {}
    count = total_bytes = 0
    for modality, level, state, n, size in rows:
        count += n
        total_bytes += size
        outcomes[state.value] += n
        share = modalities.setdefault(modality, [0, 0])
        share[0] += n
        share[1] += size
        level_counts = levels.setdefault(level, [0, 0])
        level_counts[0] += n
        level_counts[1] += n if state in DELIVERED else 0
    finished = sum(outcomes[s.value] for s in FINISHED_STATES)
    delivered = outcomes[UploadState.delivered.value]
    stat = levels.get(ServiceLevel.stat, [0, 0])
    return Summary(
        scope=scope,
        uploads=Volume(count=count, bytes=total_bytes, gigabytes=round(total_bytes / 1e9, 3)),
        outcomes=outcomes,
        finished=finished,
        success_rate=delivered / finished if finished else None,
        modalities=[
            ModalityShare(modality=m, count=v[0], bytes=v[1])
            for m, v in sorted(modalities.items(), key=lambda item: (-item[1][0], item[0]))
        ],
        service_levels=[
            ServiceLevelShare(
                service_level=level,
                count=levels[level][0],
                delivered=levels[level][1],
                time_to_pacs=_durations(by_level.get(level)),
            )
            for level in ServiceLevel
            if level in levels
        ],
        time_to_pacs=_durations(overall),
        stat_turnaround=StatTurnaround(
            count=stat[0],
            delivered=stat[1],
            time_to_pacs=_durations(by_level.get(ServiceLevel.stat)),
            reports_ready=stat_report.count,
            time_to_report=_durations(stat_report),
        ),
    )


async def trends(
    sessionmaker: async_sessionmaker[AsyncSession], scope: Scope, filters: Filters
) -> dict[str, Any]:
    """The daily series as plain data (a year of days is too many models to build per request;
    the route serialises it once, in the shape of :class:`Trends`)."""
    today = scope.until.date()
    async with sessionmaker() as session:
        rows = await repository.daily(session, filters)
    if scope.since is not None:
        first = scope.since.date()
    else:
        # "all" starts at the first day with an upload (days without any are not rows).
        first = min((row.day for row in rows), default=today)
    first = max(first, today - timedelta(days=MAX_TREND_DAYS - 1))
    days: dict[date, dict[str, Any]] = {}
    for offset in range((today - first).days + 1):
        day = first + timedelta(days=offset)
        days[day] = {
            "date": day.isoformat(),
            "uploads": 0,
            "bytes": 0,
            "delivered": 0,
            "failed": 0,
            "modalities": {},
        }
    for row in rows:
        entry = days.get(row.day)
        if entry is None:
            continue
        entry["uploads"] += row.uploads
        entry["bytes"] += row.bytes
        entry["delivered"] += row.delivered
        entry["failed"] += row.failed
        entry["modalities"][row.modality] = row.uploads
    return {"scope": scope.model_dump(mode="json"), "days": list(days.values())}


async def _in_session(
    sessionmaker: async_sessionmaker[AsyncSession],
    query: Callable[[AsyncSession], Awaitable[T]],
) -> T:
    async with sessionmaker() as session:
        return await query(session)


# --- CSV export --------------------------------------------------------------------------------

CSV_COLUMNS = (
    "date",
    "user",
    "modality",
    "service_level",
    "files",
    "bytes",
    "outcome",
    "time_to_pacs_seconds",
)
# Cells starting with these run as formulas in spreadsheet programs (CSV injection).
_FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r", "\n")


def csv_safe(value: object) -> str:
    text = "" if value is None else str(value)
    if text.startswith(_FORMULA_PREFIXES):
        return "'" + text
    return text


def _csv_row(row: repository.ExportRow) -> list[str]:
    seconds = None if row.seconds_to_pacs is None else f"{row.seconds_to_pacs:.1f}"
    values: Iterable[object] = (
        row.created_at.isoformat(),
        row.username,
        row.modality,
        row.service_level,
        row.file_count,
        row.total_bytes,
        row.state,
        seconds,
    )
    return [csv_safe(v) for v in values]


async def export_csv(
    sessionmaker: async_sessionmaker[AsyncSession], filters: Filters
) -> AsyncIterator[str]:
    """The CSV body, streamed in about 64 KiB pieces from its own session (the request's may
    be closed before the body is sent)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(CSV_COLUMNS)
    async with sessionmaker() as session:
        async for row in repository.stream_export(session, filters):
            writer.writerow(_csv_row(row))
            if buffer.tell() > 64 * 1024:
                yield buffer.getvalue()
                buffer.seek(0)
                buffer.truncate()
    yield buffer.getvalue()


# --- the admin's view of uploads ---------------------------------------------------------------

_RETRY_KINDS = (uploads_service.FORWARD_JOB, uploads_service.ASSEMBLE_JOB)


async def requeue_upload(
    session: AsyncSession, upload_id: uuid.UUID, *, admin: User, request: Request | None
) -> tuple[Upload, Job]:
    """Give a failed upload a fresh retry budget: its job that gave up runs again.

    The upload goes back to ``queued`` (forwarding, with any instances the PACS refused sent
    again) or ``assembling`` (assembly), with a timeline entry, and the admin's action is
    audited.
    """
    upload = await repository.get_upload_for_update(session, upload_id)
    if upload is None:
        raise UploadNotFound()
    if upload.state is not UploadState.failed:
        raise UploadNotRequeueable(f"The upload is {upload.state.value}", state=upload.state.value)
    keys = [uploads_service.job_key(kind, upload.id) for kind in _RETRY_KINDS]
    if await repository.unfinished_job(session, keys) is not None:
        raise UploadNotRequeueable("A job for this upload is still queued or running")
    stuck = await repository.latest_requeueable_job(session, keys)
    if stuck is not None:
        job = await jobs_service.requeue(session, stuck.id)
    elif await uploads_service.enqueue_forwarding(session, upload):
        enqueued = await repository.unfinished_job(session, keys[:1])
        if enqueued is None:
            raise UploadNotRequeueable("The forwarding stage took no job for this upload")
        job = enqueued
    else:
        raise UploadNotRequeueable("No failed job to run again and no forwarding stage")
    detail = "requeued by an administrator"
    resent = 0
    if job.kind == uploads_service.FORWARD_JOB:
        # Refused instances are what a study failed on when the PACS refused all of it: an
        # admin requeues once the PACS side is put right, so they are sent again too (or the
        # new run would find nothing to send and fail the study once more).
        resent = await pacs_repository.resend_refused(session, upload.id)
        if resent:
            detail += f"; {resent} refused instance(s) will be sent again"
    upload.state = (
        UploadState.assembling if job.kind == uploads_service.ASSEMBLE_JOB else UploadState.queued
    )
    upload.updated_at = utcnow()
    await uploads_repository.add_event(session, upload.id, upload.state, detail=detail)
    await record_audit(
        session,
        "upload.requeued",
        request=request,
        actor_id=admin.id,
        target_type="upload",
        target_id=str(upload.id),
        details={"job_id": str(job.id), "kind": job.kind, "refused_resent": resent},
    )
    return upload, job


async def export_uploads_section(session: AsyncSession, user: User) -> list[dict[str, object]]:
    """The user's uploads for ``GET /users/me/export`` (the study as declared, and outcome)."""
    return [
        {
            "upload_id": str(u.id),
            "state": u.state.value,
            "created_at": u.created_at.isoformat(),
            "completed_at": u.completed_at.isoformat() if u.completed_at else None,
            "patient_name": u.patient_name,
            "patient_id": u.patient_id,
            "study_date": u.study_date.isoformat(),
            "modality": u.modality,
            "service_level": u.service_level.value,
            "study_description": u.study_description,
            "clinical_history": u.clinical_history,
            "file_count": u.file_count,
            "instance_count": u.instance_count,
            "total_bytes": u.total_bytes,
            "failure_reason": u.failure_reason,
        }
        for u in await repository.uploads_of_owner(session, user.id)
    ]
