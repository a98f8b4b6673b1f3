"""The retention job's queries: what has been kept long enough, by the other domains' tables.

Retention is a cross-domain policy (PRD C-BIZ-01), so its SQL lives here rather than being
spread over each domain; each statement only deletes rows whose domain no longer needs them.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, delete, exists, func, literal_column, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from relaypacs.audit.models import AuditEvent
from relaypacs.auth.models import LoginSession, RefreshToken, RevokedAccessToken
from relaypacs.config import AUDIT_MINIMUM_RETENTION_DAYS
from relaypacs.notifications.models import Notification
from relaypacs.uploads.models import Upload, UploadState

_NO_SYNC: dict[str, Any] = {"synchronize_session": False}


def _rowcount(result: Any) -> int:
    return int(result.rowcount or 0)


async def delivered_uploads_to_purge(
    session: AsyncSession, delivered_before: datetime, limit: int
) -> list[uuid.UUID]:
    """Delivered uploads whose stored files are still there and whose delivery is old enough.

    Only ``delivered``: a partially delivered study keeps the instances the PACS refused
    (DESIGN promise 4). An upload's last change is its delivery, so ``updated_at`` dates it.
    """
    statement = (
        select(Upload.id)
        .where(
            Upload.state == UploadState.delivered,
            Upload.purged_at.is_(None),
            Upload.updated_at < delivered_before,
        )
        .order_by(Upload.updated_at)
        .limit(limit)
    )
    return list((await session.scalars(statement)).all())


async def delete_ended_login_sessions(session: AsyncSession, ended_before: datetime) -> int:
    """Sign-in sessions revoked, or whose every refresh token expired, before ``ended_before``.

    Their refresh tokens go with them (ON DELETE CASCADE).
    """
    live_token = exists().where(
        RefreshToken.session_id == LoginSession.id, RefreshToken.expires_at >= ended_before
    )
    has_token = exists().where(RefreshToken.session_id == LoginSession.id)
    statement = delete(LoginSession).where(
        or_(
            LoginSession.revoked_at < ended_before,
            has_token & ~live_token,
            # A session that never got a token (sign-in interrupted) ends when it starts.
            ~has_token & (LoginSession.created_at < ended_before),
        )
    )
    return _rowcount(await session.execute(statement, execution_options=_NO_SYNC))


async def delete_expired_access_token_denials(session: AsyncSession, now: datetime) -> int:
    """A revoked access token past its own expiry is refused anyway: its entry is dead weight."""
    statement = delete(RevokedAccessToken).where(RevokedAccessToken.expires_at < now)
    return _rowcount(await session.execute(statement, execution_options=_NO_SYNC))


async def delete_notifications_before(session: AsyncSession, before: datetime) -> int:
    statement = delete(Notification).where(Notification.created_at < before)
    return _rowcount(await session.execute(statement, execution_options=_NO_SYNC))


async def delete_audit_events_before(session: AsyncSession, before: datetime) -> int:
    """Audit records older than ``before`` and than the legal minimum by the database's clock.

    The database refuses to delete a record younger than the legal minimum (migration 0005),
    judged by its own clock. With the retention at that minimum, an application clock running
    ahead of the database's would ask for records the trigger protects, and the whole delete
    would fail, hour after hour; the second bound, the trigger's own, keeps the two in step.
    """
    statement = delete(AuditEvent).where(
        AuditEvent.occurred_at < before,
        AuditEvent.occurred_at < _legal_minimum_cutoff(session.get_bind().dialect.name),
    )
    return _rowcount(await session.execute(statement, execution_options=_NO_SYNC))


def _legal_minimum_cutoff(dialect: str) -> ColumnElement[Any]:
    # The same expressions as the triggers of migration 0005 (and so the same clock and format).
    days = AUDIT_MINIMUM_RETENTION_DAYS
    if dialect == "postgresql":
        return literal_column(f"now() - interval '{days} days'")
    return literal_column(f"strftime('%Y-%m-%d %H:%M:%f', 'now', '-{days} days')")


async def uploads_awaiting_delivery(
    session: AsyncSession,
) -> list[tuple[UploadState, int, datetime | None]]:
    """Uploads waiting for or in forwarding: (state, count, when the longest-waiting one moved)."""
    statement = (
        select(Upload.state, func.count(), func.min(Upload.updated_at))
        .where(Upload.state.in_((UploadState.queued, UploadState.forwarding)))
        .group_by(Upload.state)
    )
    rows = (await session.execute(statement)).all()
    return [(UploadState(state), count, oldest) for state, count, oldest in rows]
