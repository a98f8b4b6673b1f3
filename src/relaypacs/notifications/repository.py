"""All SQL of notifications, the live-event log and stream tickets.

The ``*_sync`` functions run inside SQLAlchemy session hooks (``before_commit``), where only the
synchronous connection of the committing transaction is at hand.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, and_, delete, exists, func, insert, or_, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from relaypacs.auth.models import LoginSession
from relaypacs.notifications.models import Notification, StreamEvent, StreamTicket
from relaypacs.uploads.models import Upload
from relaypacs.users.models import Role, User

# --- notifications -----------------------------------------------------------------------------


async def add_notification(session: AsyncSession, notification: Notification) -> None:
    session.add(notification)
    await session.flush()


async def get_notification(
    session: AsyncSession, notification_id: uuid.UUID, user_id: uuid.UUID
) -> Notification | None:
    statement = select(Notification).where(
        Notification.id == notification_id, Notification.user_id == user_id
    )
    return (await session.scalars(statement)).first()


async def list_notifications(
    session: AsyncSession,
    user_id: uuid.UUID,
    *,
    unread: bool | None,
    before: tuple[datetime, uuid.UUID] | None,
    limit: int,
) -> list[Notification]:
    """Newest first; ``before`` is the (created_at, id) of the last row of the previous page."""
    statement = select(Notification).where(Notification.user_id == user_id)
    if unread is True:
        statement = statement.where(Notification.read_at.is_(None))
    elif unread is False:
        statement = statement.where(Notification.read_at.is_not(None))
    if before is not None:
        at, last_id = before
        statement = statement.where(
            or_(
                Notification.created_at < at,
                and_(Notification.created_at == at, Notification.id < last_id),
            )
        )
    statement = statement.order_by(Notification.created_at.desc(), Notification.id.desc())
    return list((await session.scalars(statement.limit(limit))).all())


async def list_all_notifications(session: AsyncSession, user_id: uuid.UUID) -> list[Notification]:
    statement = (
        select(Notification)
        .where(Notification.user_id == user_id)
        .order_by(Notification.created_at, Notification.id)
    )
    return list((await session.scalars(statement)).all())


async def unread_count(session: AsyncSession, user_id: uuid.UUID) -> int:
    statement = select(func.count()).where(
        Notification.user_id == user_id, Notification.read_at.is_(None)
    )
    return int((await session.execute(statement)).scalar_one())


async def mark_all_read(session: AsyncSession, user_id: uuid.UUID, now: datetime) -> int:
    result = await session.execute(
        update(Notification)
        .where(Notification.user_id == user_id, Notification.read_at.is_(None))
        .values(read_at=now)
        .execution_options(synchronize_session=False)
    )
    return int(getattr(result, "rowcount", 0) or 0)


async def active_radiologist_ids(session: AsyncSession) -> list[uuid.UUID]:
    statement = select(User.id).where(User.role == Role.radiologist, User.is_active.is_(True))
    return list((await session.scalars(statement)).all())


async def get_user(session: AsyncSession, user_id: uuid.UUID) -> User | None:
    return await session.get(User, user_id)


# --- live events -------------------------------------------------------------------------------


async def events_after(
    session: AsyncSession, user_id: uuid.UUID, after_id: int, limit: int
) -> list[StreamEvent]:
    statement = (
        select(StreamEvent)
        .where(StreamEvent.user_id == user_id, StreamEvent.id > after_id)
        .order_by(StreamEvent.id)
        .limit(limit)
    )
    return list((await session.scalars(statement)).all())


async def get_events(session: AsyncSession, event_ids: Sequence[int]) -> list[StreamEvent]:
    statement = select(StreamEvent).where(StreamEvent.id.in_(event_ids)).order_by(StreamEvent.id)
    return list((await session.scalars(statement)).all())


async def delete_events_before(session: AsyncSession, before: datetime) -> int:
    result = await session.execute(delete(StreamEvent).where(StreamEvent.created_at < before))
    return int(getattr(result, "rowcount", 0) or 0)


def upload_owners_sync(connection: Connection, upload_ids: Sequence[uuid.UUID]) -> dict[Any, Any]:
    statement = select(Upload.id, Upload.owner_id).where(Upload.id.in_(upload_ids))
    return {row[0]: row[1] for row in connection.execute(statement)}


def insert_events_sync(
    connection: Connection, rows: Sequence[dict[str, Any]]
) -> list[tuple[int, datetime]]:
    """Insert in order and return (id, created_at) of each row, in the same order."""
    created: list[tuple[int, datetime]] = []
    statement = insert(StreamEvent).returning(StreamEvent.id, StreamEvent.created_at)
    # One statement per row: RETURNING order across a multi-row insert is not guaranteed.
    for row in rows:
        event_id, created_at = connection.execute(statement, row).one()
        created.append((int(event_id), created_at))
    return created


def pg_notify_sync(
    connection: Connection, channel: str, payloads: Sequence[dict[str, Any]]
) -> None:
    """PostgreSQL delivers these when (and only if) the transaction commits."""
    statement = text("SELECT pg_notify(:channel, :payload)")
    for payload in payloads:
        connection.execute(
            statement, {"channel": channel, "payload": json.dumps(payload, separators=(",", ":"))}
        )


# --- stream tickets ----------------------------------------------------------------------------


async def add_ticket(session: AsyncSession, ticket: StreamTicket) -> None:
    session.add(ticket)
    await session.flush()


async def redeem_ticket(
    session: AsyncSession, token_hash: str, now: datetime
) -> tuple[uuid.UUID, uuid.UUID | None] | None:
    """Use the ticket up in one statement: of two redemptions racing, one wins. Returns its
    user and the sign-in that asked for it."""
    statement = (
        update(StreamTicket)
        .where(
            StreamTicket.token_hash == token_hash,
            StreamTicket.used_at.is_(None),
            StreamTicket.expires_at > now,
        )
        .values(used_at=now)
        .returning(StreamTicket.user_id, StreamTicket.session_id)
        .execution_options(synchronize_session=False)
    )
    row = (await session.execute(statement)).one_or_none()
    return (row[0], row[1]) if row is not None else None


async def stream_still_allowed(
    session: AsyncSession, user_id: uuid.UUID, login_session_id: uuid.UUID | None
) -> bool:
    """Whether the account is active and the sign-in the stream was opened in still lives."""
    statement = select(User.is_active).where(User.id == user_id)
    if login_session_id is not None:
        statement = statement.where(
            exists().where(
                LoginSession.id == login_session_id,
                LoginSession.user_id == user_id,
                LoginSession.revoked_at.is_(None),
            )
        )
    return bool((await session.execute(statement)).scalar_one_or_none())


async def delete_tickets_before(session: AsyncSession, before: datetime) -> int:
    result = await session.execute(delete(StreamTicket).where(StreamTicket.expires_at < before))
    return int(getattr(result, "rowcount", 0) or 0)


async def latest_event_id(session: AsyncSession, user_id: uuid.UUID) -> int:
    statement = select(func.max(StreamEvent.id)).where(StreamEvent.user_id == user_id)
    return int((await session.execute(statement)).scalar_one() or 0)
