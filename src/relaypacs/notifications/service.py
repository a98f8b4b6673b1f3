"""Notifications: create (joining the caller's transaction), list, mark read, stream tickets.

Other domains call :func:`notify`; the live ``notification`` and ``unread_count`` events are
written with it and delivered after the caller commits (see :mod:`relaypacs.notifications.live`).
Nothing here commits.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import secrets
import uuid
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from typing import Any

import structlog
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from relaypacs.db.base import utcnow
from relaypacs.notifications import repository
from relaypacs.notifications.exceptions import (
    InvalidCursor,
    InvalidStreamTicket,
    NotificationNotFound,
)
from relaypacs.notifications.live import (
    EventHub,
    LiveEvent,
    StreamConnection,
    stage_event,
    stage_upload_state,
)
from relaypacs.notifications.models import (
    Notification,
    NotificationType,
    StreamEventType,
    StreamTicket,
)
from relaypacs.notifications.schemas import NotificationOut
from relaypacs.uploads.models import Upload
from relaypacs.users.models import User

log = structlog.get_logger(__name__)

TICKET_SECONDS = 60
REPLAY_BATCH = 200

__all__ = [
    "mark_all_read",
    "notify",
    "publish_upload_state",
    "set_read",
]


def notification_out(notification: Notification) -> NotificationOut:
    return NotificationOut(
        id=notification.id,
        type=notification.type,
        title=notification.title,
        body=notification.body,
        upload_id=notification.upload_id,
        report_id=notification.report_id,
        data=notification.data or {},
        read=notification.read_at is not None,
        read_at=notification.read_at,
        created_at=notification.created_at,
    )


async def notify(
    session: AsyncSession,
    user_id: uuid.UUID,
    type: NotificationType | str,
    *,
    title: str,
    body: str,
    upload_id: uuid.UUID | None = None,
    report_id: uuid.UUID | None = None,
    data: dict[str, Any] | None = None,
) -> Notification:
    """Store a notification for ``user_id`` in the caller's transaction.

    The live ``notification`` and ``unread_count`` events go out after the caller commits.
    ``title``/``body`` are shown to the user and stored; keep patient names out of them (they
    reach lock screens and browser notifications): study description, modality and date suffice.
    """
    kind = NotificationType(type)
    notification = Notification(
        id=uuid.uuid4(),
        user_id=user_id,
        type=kind.value,
        title=title[:200],
        body=body[:2000],
        upload_id=upload_id,
        report_id=report_id,
        data=dict(data or {}),
        created_at=utcnow(),
        read_at=None,
    )
    await repository.add_notification(session, notification)
    stage_event(
        session,
        user_id,
        StreamEventType.notification,
        notification_out(notification).model_dump(mode="json"),
    )
    await _stage_unread_count(session, user_id)
    return notification


async def publish_upload_state(session: AsyncSession, upload: Upload) -> None:
    """Send the upload's current state to its owner's streams after the caller commits.

    Not needed after ``uploads.repository.add_event``: every new timeline row is published by
    itself. Use it for a change that writes no timeline row.
    """
    stage_upload_state(session, upload.id, upload.state.value)


async def _stage_unread_count(session: AsyncSession, user_id: uuid.UUID) -> int:
    count = await repository.unread_count(session, user_id)
    stage_event(session, user_id, StreamEventType.unread_count, {"count": count})
    return count


# --- reading -----------------------------------------------------------------------------------


def encode_cursor(notification: Notification) -> str:
    raw = f"{notification.created_at.isoformat()}|{notification.id}"
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        at, _, raw_id = base64.urlsafe_b64decode(padded.encode()).decode().partition("|")
        when = datetime.fromisoformat(at)
        if when.tzinfo is None:
            raise ValueError("naive")
        return when, uuid.UUID(raw_id)
    except (ValueError, binascii.Error, UnicodeDecodeError) as exc:
        raise InvalidCursor() from exc


async def list_notifications(
    session: AsyncSession,
    user: User,
    *,
    unread: bool | None,
    cursor: str | None,
    limit: int,
) -> tuple[list[Notification], str | None]:
    before = decode_cursor(cursor) if cursor else None
    rows = await repository.list_notifications(
        session, user.id, unread=unread, before=before, limit=limit + 1
    )
    more = len(rows) > limit
    rows = rows[:limit]
    return rows, encode_cursor(rows[-1]) if more and rows else None


async def set_read(
    session: AsyncSession, user: User, notification_id: uuid.UUID, *, read: bool
) -> Notification:
    notification = await repository.get_notification(session, notification_id, user.id)
    if notification is None:
        # Another user's notification is as unknown as a missing one.
        raise NotificationNotFound()
    was_read = notification.read_at is not None
    if was_read != read:
        notification.read_at = utcnow() if read else None
        await session.flush()
        await _stage_unread_count(session, user.id)
    return notification


async def mark_all_read(session: AsyncSession, user: User) -> int:
    changed = await repository.mark_all_read(session, user.id, utcnow())
    if changed:
        await _stage_unread_count(session, user.id)
    return changed


async def unread_count(session: AsyncSession, user: User) -> int:
    return await repository.unread_count(session, user.id)


async def export_section(session: AsyncSession, user: User) -> list[dict[str, Any]]:
    """The user's notifications for ``GET /users/me/export``."""
    rows = await repository.list_all_notifications(session, user.id)
    return [notification_out(n).model_dump(mode="json") for n in rows]


# --- stream tickets ----------------------------------------------------------------------------


def _hash_ticket(ticket: str) -> str:
    return hashlib.sha256(ticket.encode()).hexdigest()


async def issue_stream_ticket(
    session: AsyncSession, user: User, login_session_id: uuid.UUID
) -> tuple[str, datetime]:
    """A ticket for ``user``'s stream, bound to the sign-in that asked for it."""
    ticket = secrets.token_urlsafe(32)
    now = utcnow()
    expires_at = now + timedelta(seconds=TICKET_SECONDS)
    await repository.add_ticket(
        session,
        StreamTicket(
            token_hash=_hash_ticket(ticket),
            user_id=user.id,
            session_id=login_session_id,
            created_at=now,
            expires_at=expires_at,
            used_at=None,
        ),
    )
    return ticket, expires_at


async def redeem_stream_ticket(session: AsyncSession, ticket: str) -> tuple[User, uuid.UUID | None]:
    """The ticket's user and the sign-in it was issued in (None: issued before that was kept)."""
    if not ticket or len(ticket) > 200:
        raise InvalidStreamTicket()
    redeemed = await repository.redeem_ticket(session, _hash_ticket(ticket), utcnow())
    if redeemed is None:
        raise InvalidStreamTicket()
    user_id, login_session_id = redeemed
    user = await repository.get_user(session, user_id)
    if user is None or not user.is_active or user.must_change_password:
        raise InvalidStreamTicket()
    if not await repository.stream_still_allowed(session, user_id, login_session_id):
        raise InvalidStreamTicket()  # signed out between the ticket and the stream
    return user, login_session_id


async def prune(session: AsyncSession, *, event_retention: timedelta) -> tuple[int, int]:
    now = utcnow()
    events = await repository.delete_events_before(session, now - event_retention)
    # Tickets are worthless a minute after they expire; keep them briefly for investigations.
    tickets = await repository.delete_tickets_before(session, now - timedelta(hours=1))
    return events, tickets


# --- the stream --------------------------------------------------------------------------------


def _comment(text: str) -> bytes:
    return f": {text}\n\n".encode()


def _heartbeat(every_seconds: float) -> bytes:
    # Unnumbered and never logged; `every` lets a client size its silence watchdog.
    return f'event: heartbeat\ndata: {{"every":{every_seconds:g}}}\n\n'.encode()


def _unnumbered(event_type: StreamEventType, data: str) -> bytes:
    # No id: a client's Last-Event-ID keeps pointing at the last logged event.
    return f"event: {event_type.value}\ndata: {data}\n\n".encode()


async def event_stream(
    hub: EventHub,
    sessionmaker: async_sessionmaker[AsyncSession],
    stream: StreamConnection,
    *,
    last_event_id: int | None,
    heartbeat_seconds: float,
    login_session_id: uuid.UUID | None = None,
    retry_ms: int = 3000,
) -> AsyncIterator[bytes]:
    """The SSE body of one stream (already registered with ``hub``, so nothing committed from
    now on can be missed).

    Order: the client's reconnection delay; the events logged after ``last_event_id`` (replay);
    the current unread count; then live events, with a heartbeat comment when idle. An event is
    sent once even when both the replay and the live path see it. An overflowed stream ends;
    its client reconnects with Last-Event-ID and reads the rest from the log. When idle, the
    stream also checks that its account is active and ``login_session_id`` (the sign-in it was
    opened in) has not ended, and closes otherwise.
    """
    sent: set[int] = set()
    if last_event_id is not None:
        cursor = last_event_id
    else:
        async with sessionmaker() as session:
            # Events before the connection are not this client's to replay.
            cursor = await repository.latest_event_id(session, stream.user_id)

    async def from_log() -> AsyncIterator[bytes]:
        nonlocal cursor
        while True:
            async with sessionmaker() as session:
                rows = await repository.events_after(session, stream.user_id, cursor, REPLAY_BATCH)
            for row in rows:
                cursor = max(cursor, row.id)
                if row.id not in sent:
                    sent.add(row.id)
                    yield LiveEvent(row.id, row.user_id, row.event, row.data).encode()
            if len(rows) < REPLAY_BATCH:
                return

    yield f"retry: {retry_ms}\n\n".encode()
    if last_event_id is not None:
        async for chunk in from_log():
            yield chunk
    async with sessionmaker() as session:
        count = await repository.unread_count(session, stream.user_id)
    yield _unnumbered(StreamEventType.unread_count, f'{{"count":{count}}}')

    while True:
        if stream.overflowed:
            yield _comment("overflow: reconnect with Last-Event-ID")
            return
        try:
            live = await _next_event(stream, wait=heartbeat_seconds)
        except TimeoutError:
            live = None
            if not await _still_allowed(sessionmaker, stream.user_id, login_session_id):
                # Disabled, deleted or signed out since the stream opened: it ends with them.
                yield _comment("closed: the account is no longer active or the sign-in ended")
                return
            # An event, not a comment: a page's EventSource never sees comments, and only
            # something it sees lets it tell a quiet stream from a dead connection.
            yield _heartbeat(heartbeat_seconds)
            if not hub.uses_listen:
                # Another process on the same SQLite file may have written events.
                stream.resync.set()
        if live is not None and live.id not in sent:
            sent.add(live.id)
            yield live.encode()
        if stream.resync.is_set() and not stream.overflowed:
            stream.resync.clear()
            async for chunk in from_log():
                yield chunk
        if len(sent) > 4096:
            # Only recent ids can still arrive late (a transaction that committed late).
            floor = cursor - 1024
            sent = {i for i in sent if i > floor}


async def _still_allowed(
    sessionmaker: async_sessionmaker[AsyncSession],
    user_id: uuid.UUID,
    login_session_id: uuid.UUID | None,
) -> bool:
    async with sessionmaker() as session:
        return await repository.stream_still_allowed(session, user_id, login_session_id)


async def _next_event(stream: StreamConnection, *, wait: float) -> LiveEvent | None:
    """The next queued event; None when a resync is due; TimeoutError after ``wait`` s."""
    if not stream.queue.empty():
        return stream.queue.get_nowait()
    getter = asyncio.ensure_future(stream.queue.get())
    resync = asyncio.ensure_future(stream.resync.wait())
    try:
        done, _ = await asyncio.wait(
            {getter, resync}, timeout=wait, return_when=asyncio.FIRST_COMPLETED
        )
    finally:
        for waiter in (getter, resync):
            if not waiter.done():
                waiter.cancel()
    if getter in done:
        return getter.result()
    if not done:
        raise TimeoutError
    return None
