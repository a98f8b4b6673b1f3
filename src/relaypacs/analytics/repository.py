"""All SQL of analytics and of the admin views of uploads.

Figures come from ``upload_stat`` (one narrow row per upload, kept by
:mod:`relaypacs.analytics.facts`), filtered on the period through ``upload_stat_created_at_idx``
(on PostgreSQL it covers the columns the summary reads). On PostgreSQL the percentiles are
``percentile_cont`` aggregates; SQLite has none, so there the database returns the durations
and :func:`percentile` interpolates the same way.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, delete, func, insert, literal_column, or_, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from relaypacs.analytics.facts import refresh_sync
from relaypacs.analytics.models import RolledDay, UploadStat, UploadStatDay
from relaypacs.jobs.models import Job, JobState
from relaypacs.reports.models import Report
from relaypacs.uploads.models import Upload, UploadState
from relaypacs.users.models import ServiceLevel, User

S = UploadStat
D = UploadStatDay
DELIVERED_STATES = (UploadState.delivered, UploadState.partially_delivered)
FAILED_STATES = (UploadState.failed, UploadState.rejected)


@dataclass(frozen=True)
class DailyRow:
    day: date
    modality: str
    uploads: int
    bytes: int
    delivered: int
    failed: int


@dataclass(frozen=True)
class Filters:
    since: datetime | None
    owner_id: uuid.UUID | None
    modality: str | None
    service_level: ServiceLevel | None

    def conditions(self) -> list[ColumnElement[bool]]:
        conditions: list[ColumnElement[bool]] = []
        if self.since is not None:
            conditions.append(S.created_at >= self.since)
        if self.owner_id is not None:
            conditions.append(S.owner_id == self.owner_id)
        if self.modality is not None:
            conditions.append(S.modality == self.modality)
        if self.service_level is not None:
            conditions.append(S.service_level == self.service_level.value)
        return conditions


def _postgres(session: AsyncSession) -> bool:
    return session.get_bind().dialect.name == "postgresql"


async def _tune(session: AsyncSession) -> None:
    if _postgres(session):
        # Sorting ~100k durations for the percentiles must not spill to disk (default 4 MB).
        await session.execute(text("SET LOCAL work_mem = '32MB'"))


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
        select(S.modality, S.service_level, S.state, func.count(), func.sum(S.total_bytes))
        .where(*filters.conditions())
        .group_by(S.modality, S.service_level, S.state)
    )
    return [
        (modality, ServiceLevel(level), UploadState(state), int(n), int(total or 0))
        for modality, level, state, n, total in (await session.execute(statement)).all()
    ]


# --- durations ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class DurationStats:
    count: int
    median: float | None
    p95: float | None


async def time_to_pacs(
    session: AsyncSession, filters: Filters
) -> tuple[DurationStats, dict[ServiceLevel, DurationStats]]:
    """Upload start to delivery: overall and per service level."""
    await _tune(session)
    conditions = [S.seconds_to_pacs.is_not(None), *filters.conditions()]
    if _postgres(session):
        statement = (
            select(S.service_level, func.count(), _median_and_p95(S.seconds_to_pacs))
            .where(*conditions)
            .group_by(func.grouping_sets(S.service_level, literal_column("()")))
        )
        overall = DurationStats(0, None, None)
        levels: dict[ServiceLevel, DurationStats] = {}
        for level, n, pair in (await session.execute(statement)).all():
            stats = DurationStats(int(n), *_pair(pair))
            if level is None:
                overall = stats
            else:
                levels[ServiceLevel(level)] = stats
        return overall, levels
    rows = (
        await session.execute(select(S.service_level, S.seconds_to_pacs).where(*conditions))
    ).all()
    by_level: dict[ServiceLevel, list[float]] = {}
    for level, seconds in rows:
        by_level.setdefault(ServiceLevel(level), []).append(float(seconds or 0.0))
    every = [s for values in by_level.values() for s in values]
    return _stats(every), {level: _stats(values) for level, values in by_level.items()}


async def time_to_report(session: AsyncSession, filters: Filters) -> DurationStats:
    """Upload start to report ready, for the uploads in ``filters`` whose report is ready."""
    conditions = [S.seconds_to_report.is_not(None), *filters.conditions()]
    if _postgres(session):
        statement = select(func.count(), _median_and_p95(S.seconds_to_report)).where(*conditions)
        n, pair = (await session.execute(statement)).one()
        return DurationStats(int(n), *_pair(pair))
    values = [
        float(v or 0.0)
        for v in (await session.scalars(select(S.seconds_to_report).where(*conditions))).all()
    ]
    return _stats(values)


def _stats(values: Sequence[float]) -> DurationStats:
    return DurationStats(len(values), percentile(values, 0.5), percentile(values, 0.95))


def _median_and_p95(column: Any) -> Any:
    # One ordered-set aggregate with an array of fractions sorts the values once, not twice.
    return func.percentile_cont(literal_column("ARRAY[0.5, 0.95]")).within_group(column)


def _pair(values: Sequence[float | None] | None) -> tuple[float | None, float | None]:
    if not values:
        return None, None
    return values[0], values[1]


# --- trends ------------------------------------------------------------------------------------


async def daily(session: AsyncSession, filters: Filters) -> list[DailyRow]:
    """Per UTC day of the upload's start and modality: uploads, bytes, delivered, failed.

    For everyone's uploads the sealed days come from the daily roll-up and only the others
    (today, yesterday, a partial first day, days changed since they were sealed) from
    ``upload_stat``; one user's uploads are few and always read from ``upload_stat``. One
    snapshot for both reads, so a day is never counted from both or from neither.
    """
    if _postgres(session):
        await session.execute(text("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ"))
    sealed: list[date] = []
    if filters.owner_id is None:
        statement = select(RolledDay.day).order_by(RolledDay.day)
        if filters.since is not None:
            # The period's first day is partial: read it live.
            statement = statement.where(RolledDay.day > filters.since.date())
        sealed = list((await session.scalars(statement)).all())
    if not sealed:
        return await _daily_live(session, filters.conditions())
    first, last = sealed[0], sealed[-1]
    known = set(sealed)
    gaps = [
        first + timedelta(days=n)
        for n in range((last - first).days)
        if first + timedelta(days=n) not in known
    ]
    live = await _daily_live(
        session, [*filters.conditions(), or_(S.day < first, S.day > last, S.day.in_(gaps))]
    )
    return live + await _daily_sealed(session, filters, first, last)


async def _daily_live(
    session: AsyncSession, conditions: Sequence[ColumnElement[bool]]
) -> list[DailyRow]:
    statement = (
        select(S.day, S.modality, func.count(), func.sum(S.total_bytes), *_outcome_counts())
        .where(*conditions)
        .group_by(S.day, S.modality)
    )
    return _daily_rows((await session.execute(statement)).all())


async def _daily_sealed(
    session: AsyncSession, filters: Filters, first: date, last: date
) -> list[DailyRow]:
    conditions: list[ColumnElement[bool]] = [D.day >= first, D.day <= last]
    if filters.modality is not None:
        conditions.append(D.modality == filters.modality)
    if filters.service_level is not None:
        conditions.append(D.service_level == filters.service_level.value)
    statement = (
        select(
            D.day,
            D.modality,
            func.sum(D.uploads),
            func.sum(D.total_bytes),
            func.sum(D.delivered),
            func.sum(D.failed),
        )
        .join(RolledDay, RolledDay.day == D.day)
        .where(*conditions)
        .group_by(D.day, D.modality)
    )
    return _daily_rows((await session.execute(statement)).all())


def _daily_rows(found: Sequence[Any]) -> list[DailyRow]:
    rows = []
    for day, modality, n, total, ok, bad in found:
        rows.append(
            DailyRow(_as_date(day), modality, int(n), int(total or 0), int(ok or 0), int(bad or 0))
        )
    return rows


def _outcome_counts() -> tuple[ColumnElement[int], ColumnElement[int]]:
    """Of the rows counted: delivered (fully or partly), and failed or rejected."""
    return (
        func.count().filter(S.state.in_([s.value for s in DELIVERED_STATES])),
        func.count().filter(S.state.in_([s.value for s in FAILED_STATES])),
    )


def _as_date(value: object) -> date:
    # SQLite hands a grouped or distinct date back as text.
    return value if isinstance(value, date) else date.fromisoformat(str(value))


# --- the daily roll-up -------------------------------------------------------------------------


async def days_to_seal(session: AsyncSession, newest: date, limit: int) -> list[date]:
    """Days up to ``newest`` with uploads and no current roll-up, oldest first."""
    statement = (
        select(S.day)
        .where(S.day <= newest, S.day.not_in(select(RolledDay.day)))
        .distinct()
        .order_by(S.day)
        .limit(limit)
    )
    return [_as_date(day) for day in (await session.scalars(statement)).all()]


async def seal_day(session: AsyncSession, day: date, now: datetime) -> None:
    """Write ``day``'s sums and mark it sealed, in the caller's transaction.

    A change to one of its uploads unseals it in its own transaction (``facts``); the two must
    not interleave. On SQLite, writing first takes the one write lock before anything is read.
    On PostgreSQL the day's rows are share-locked before they are summed: a change in flight is
    waited for (and its unsealing lands after this seal), a later one waits for this commit.
    """
    await session.execute(delete(RolledDay).where(RolledDay.day == day))
    await session.execute(delete(UploadStatDay).where(UploadStatDay.day == day))
    if _postgres(session):
        await session.execute(select(S.upload_id).where(S.day == day).with_for_update(read=True))
    sums = (
        select(
            S.day,
            S.modality,
            S.service_level,
            func.count(),
            func.sum(S.total_bytes),
            *_outcome_counts(),
        )
        .where(S.day == day)
        .group_by(S.day, S.modality, S.service_level)
    )
    columns = ["day", "modality", "service_level", "uploads", "total_bytes", "delivered", "failed"]
    await session.execute(insert(UploadStatDay).from_select(columns, sums))
    session.add(RolledDay(day=day, rolled_at=now))
    await session.flush()


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
    statement = (
        select(
            S.created_at,
            User.username,
            S.modality,
            S.service_level,
            S.file_count,
            S.total_bytes,
            S.state,
            S.seconds_to_pacs,
        )
        .join(User, User.id == S.owner_id)
        .where(*filters.conditions())
        .order_by(S.created_at, S.upload_id)
        .execution_options(yield_per=batch)
    )
    result = await session.stream(statement)
    async for row in result:
        yield ExportRow(*row)


# --- keeping the facts -------------------------------------------------------------------------


async def stale_stat_upload_ids(session: AsyncSession, limit: int) -> list[uuid.UUID]:
    """Uploads whose fact row is missing or disagrees with the upload or its report."""
    statement = (
        select(Upload.id)
        .outerjoin(S, S.upload_id == Upload.id)
        .outerjoin(Report, Report.upload_id == Upload.id)
        .where(
            (S.upload_id.is_(None))
            | (S.state != Upload.state)
            | (Report.ready_at.is_not(None) & S.seconds_to_report.is_(None))
        )
        .limit(limit)
    )
    return list((await session.scalars(statement)).all())


async def refresh_stats(session: AsyncSession, upload_ids: Sequence[uuid.UUID]) -> int:
    connection = await session.connection()
    return await connection.run_sync(lambda sync: refresh_sync(sync, upload_ids))


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
