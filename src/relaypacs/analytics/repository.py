"""All SQL of analytics and of the admin views of uploads.

Aggregates run in the database over ``upload_created_at_idx`` (the period) and
``upload_event_state_upload_id_at_idx`` (the first delivery of each upload). On PostgreSQL the
percentiles are ``percentile_cont`` aggregates; SQLite has none, so there the database returns
the durations and :func:`percentile` interpolates the same way.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Date,
    Float,
    Select,
    cast,
    func,
    literal_column,
    select,
)
from sqlalchemy.ext.asyncio import AsyncSession

from relaypacs.jobs.models import Job, JobState
from relaypacs.reports.models import Report
from relaypacs.uploads.models import Upload, UploadEvent, UploadState
from relaypacs.users.models import ServiceLevel, User

DELIVERED_STATES = (UploadState.delivered, UploadState.partially_delivered)


@dataclass(frozen=True)
class Filters:
    since: datetime | None
    owner_id: uuid.UUID | None
    modality: str | None
    service_level: ServiceLevel | None

    def conditions(self) -> list[ColumnElement[bool]]:
        conditions: list[ColumnElement[bool]] = []
        if self.since is not None:
            conditions.append(Upload.created_at >= self.since)
        if self.owner_id is not None:
            conditions.append(Upload.owner_id == self.owner_id)
        if self.modality is not None:
            conditions.append(Upload.modality == self.modality)
        if self.service_level is not None:
            conditions.append(Upload.service_level == self.service_level)
        return conditions


def _postgres(session: AsyncSession) -> bool:
    return session.get_bind().dialect.name == "postgresql"


def _seconds(session: AsyncSession, start: Any, end: Any) -> ColumnElement[float]:
    if _postgres(session):
        return cast(func.extract("epoch", end - start), Float)
    return (func.julianday(end) - func.julianday(start)) * 86400.0


def _day(session: AsyncSession, column: Any) -> ColumnElement[Any]:
    if _postgres(session):
        return cast(func.timezone("UTC", column), Date)
    return func.date(column)


def percentile(values: Sequence[float], fraction: float) -> float | None:
    """Linear interpolation between closest ranks, as PostgreSQL's percentile_cont."""
    if not values:
        return None
    ordered = sorted(values)
    position = fraction * (len(ordered) - 1)
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


# --- counts ------------------------------------------------------------------------------------


async def counts(
    session: AsyncSession, filters: Filters
) -> list[tuple[str, ServiceLevel, UploadState, int, int]]:
    """(modality, service level, state, uploads, bytes) for every combination present."""
    statement = (
        select(
            Upload.modality,
            Upload.service_level,
            Upload.state,
            func.count(),
            func.coalesce(func.sum(Upload.total_bytes), 0),
        )
        .where(*filters.conditions())
        .group_by(Upload.modality, Upload.service_level, Upload.state)
    )
    return [
        (modality, ServiceLevel(level), UploadState(state), int(n), int(total))
        for modality, level, state, n, total in (await session.execute(statement)).all()
    ]


# --- durations ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class DurationStats:
    count: int
    median: float | None
    p95: float | None


def _delivery_seconds(session: AsyncSession, filters: Filters) -> Select[ServiceLevel, float]:
    """One row per delivered upload: its service level and seconds from start to delivery."""
    first_delivery = func.min(UploadEvent.at)
    return (
        select(
            Upload.service_level.label("service_level"),
            _seconds(session, Upload.created_at, first_delivery).label("seconds"),
        )
        .select_from(Upload)
        .join(UploadEvent, UploadEvent.upload_id == Upload.id)
        .where(UploadEvent.state.in_(DELIVERED_STATES), *filters.conditions())
        .group_by(Upload.id, Upload.service_level, Upload.created_at)
    )


async def time_to_pacs(
    session: AsyncSession, filters: Filters
) -> tuple[DurationStats, dict[ServiceLevel, DurationStats]]:
    """Overall and per service level."""
    per_upload = _delivery_seconds(session, filters).subquery()
    if _postgres(session):
        statement = select(
            per_upload.c.service_level,
            func.count(),
            func.percentile_cont(0.5).within_group(per_upload.c.seconds),
            func.percentile_cont(0.95).within_group(per_upload.c.seconds),
        ).group_by(func.grouping_sets(per_upload.c.service_level, literal_column("()")))
        overall = DurationStats(0, None, None)
        levels: dict[ServiceLevel, DurationStats] = {}
        for level, n, median, p95 in (await session.execute(statement)).all():
            stats = DurationStats(int(n), _float(median), _float(p95))
            if level is None:
                overall = stats
            else:
                levels[ServiceLevel(level)] = stats
        return overall, levels
    rows = (await session.execute(select(per_upload.c.service_level, per_upload.c.seconds))).all()
    by_level: dict[ServiceLevel, list[float]] = {}
    for level, seconds in rows:
        by_level.setdefault(ServiceLevel(level), []).append(float(seconds))
    every = [s for values in by_level.values() for s in values]
    return _stats(every), {level: _stats(values) for level, values in by_level.items()}


async def time_to_report(session: AsyncSession, filters: Filters) -> DurationStats:
    """Upload start to report ready, for the uploads in ``filters`` whose report is ready."""
    seconds = _seconds(session, Upload.created_at, Report.ready_at)
    base = (
        select(seconds.label("seconds"))
        .select_from(Upload)
        .join(Report, Report.upload_id == Upload.id)
        .where(Report.ready_at.is_not(None), *filters.conditions())
    ).subquery()
    if _postgres(session):
        statement = select(
            func.count(),
            func.percentile_cont(0.5).within_group(base.c.seconds),
            func.percentile_cont(0.95).within_group(base.c.seconds),
        )
        n, median, p95 = (await session.execute(statement)).one()
        return DurationStats(int(n), _float(median), _float(p95))
    values = [float(v) for v in (await session.scalars(select(base.c.seconds))).all()]
    return _stats(values)


def _stats(values: Sequence[float]) -> DurationStats:
    return DurationStats(len(values), percentile(values, 0.5), percentile(values, 0.95))


def _float(value: object) -> float | None:
    return None if value is None else float(value)  # type: ignore[arg-type]


# --- trends ------------------------------------------------------------------------------------


async def daily(
    session: AsyncSession, filters: Filters
) -> list[tuple[date, str, UploadState, int, int]]:
    """(day, modality, state, uploads, bytes) by UTC day of the upload's start."""
    day = _day(session, Upload.created_at).label("day")
    statement = (
        select(
            day,
            Upload.modality,
            Upload.state,
            func.count(),
            func.coalesce(func.sum(Upload.total_bytes), 0),
        )
        .where(*filters.conditions())
        .group_by(day, Upload.modality, Upload.state)
    )
    rows = []
    for value, modality, state, n, total in (await session.execute(statement)).all():
        when = value if isinstance(value, date) else date.fromisoformat(str(value))
        rows.append((when, modality, UploadState(state), int(n), int(total)))
    return rows


async def first_upload_at(session: AsyncSession, filters: Filters) -> datetime | None:
    statement = select(func.min(Upload.created_at)).where(*filters.conditions())
    value = (await session.execute(statement)).scalar_one_or_none()
    if isinstance(value, str):
        # SQLite returns an aggregate's value untyped.
        value = datetime.fromisoformat(value)
    return value


# --- export ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ExportRow:
    created_at: datetime
    username: str
    modality: str
    service_level: str
    file_count: int
    total_bytes: int
    state: str
    seconds_to_pacs: float | None


async def stream_export(
    session: AsyncSession, filters: Filters, *, batch: int = 1000
) -> AsyncIterator[ExportRow]:
    delivered = (
        select(UploadEvent.upload_id, func.min(UploadEvent.at).label("delivered_at"))
        .where(UploadEvent.state.in_(DELIVERED_STATES))
        .group_by(UploadEvent.upload_id)
        .subquery()
    )
    statement = (
        select(
            Upload.created_at,
            User.username,
            Upload.modality,
            Upload.service_level,
            Upload.file_count,
            Upload.total_bytes,
            Upload.state,
            _seconds(session, Upload.created_at, delivered.c.delivered_at),
        )
        .join(User, User.id == Upload.owner_id)
        .outerjoin(delivered, delivered.c.upload_id == Upload.id)
        .where(*filters.conditions())
        .order_by(Upload.created_at, Upload.id)
        .execution_options(yield_per=batch)
    )
    result = await session.stream(statement)
    async for row in result:
        created_at, username, modality, level, files, total, state, seconds = row
        yield ExportRow(
            created_at=created_at,
            username=username,
            modality=modality,
            service_level=str(getattr(level, "value", level)),
            file_count=int(files),
            total_bytes=int(total),
            state=str(getattr(state, "value", state)),
            seconds_to_pacs=None if seconds is None else float(seconds),
        )


# --- the admin view of uploads -----------------------------------------------------------------


async def list_uploads(
    session: AsyncSession,
    *,
    owner_id: uuid.UUID | None,
    states: Sequence[UploadState],
    modality: str | None,
    service_level: ServiceLevel | None,
    created_from: datetime | None,
    created_to: datetime | None,
    limit: int,
    offset: int,
) -> tuple[list[tuple[Upload, str]], int]:
    conditions: list[ColumnElement[bool]] = []
    if owner_id is not None:
        conditions.append(Upload.owner_id == owner_id)
    if states:
        conditions.append(Upload.state.in_(states))
    if modality is not None:
        conditions.append(Upload.modality == modality)
    if service_level is not None:
        conditions.append(Upload.service_level == service_level)
    if created_from is not None:
        conditions.append(Upload.created_at >= created_from)
    if created_to is not None:
        conditions.append(Upload.created_at < created_to)
    total = int(
        (
            await session.execute(select(func.count()).select_from(Upload).where(*conditions))
        ).scalar_one()
    )
    statement = (
        select(Upload, User.username)
        .join(User, User.id == Upload.owner_id)
        .where(*conditions)
        .order_by(Upload.created_at.desc(), Upload.id)
        .limit(limit)
        .offset(offset)
    )
    return [(u, name) for u, name in (await session.execute(statement)).all()], total


async def get_upload_for_update(session: AsyncSession, upload_id: uuid.UUID) -> Upload | None:
    statement = (
        select(Upload)
        .where(Upload.id == upload_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    return (await session.scalars(statement)).first()


async def latest_requeueable_job(session: AsyncSession, dedupe_keys: Sequence[str]) -> Job | None:
    """The upload's most recent job that gave up (failed or dead), if any."""
    statement = (
        select(Job)
        .where(
            Job.dedupe_key.in_(dedupe_keys),
            Job.state.in_((JobState.failed, JobState.dead)),
        )
        .order_by(Job.updated_at.desc())
        .limit(1)
    )
    return (await session.scalars(statement)).first()


async def unfinished_job(session: AsyncSession, dedupe_keys: Sequence[str]) -> Job | None:
    statement = select(Job).where(
        Job.dedupe_key.in_(dedupe_keys), Job.state.in_((JobState.queued, JobState.running))
    )
    return (await session.scalars(statement.limit(1))).first()


async def uploads_of_owner(session: AsyncSession, owner_id: uuid.UUID) -> list[Upload]:
    statement = select(Upload).where(Upload.owner_id == owner_id).order_by(Upload.created_at)
    return list((await session.scalars(statement)).all())
