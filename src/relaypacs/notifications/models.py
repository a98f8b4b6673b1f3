"""Notifications, the persisted log of live events (SSE replay), and one-time stream tickets."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, BigInteger, ForeignKey, Index, Integer, String, text
from sqlalchemy.orm import Mapped, mapped_column

from relaypacs.db.base import Base, IdMixin, TimestampMixin, utcnow


class NotificationType(StrEnum):
    upload_complete = "upload_complete"
    upload_failed = "upload_failed"
    report_assigned = "report_assigned"
    report_ready = "report_ready"
    additional_data_required = "additional_data_required"
    stat_study_arrived = "stat_study_arrived"


class StreamEventType(StrEnum):
    """The SSE ``event:`` names."""

    notification = "notification"
    unread_count = "unread_count"
    upload_state = "upload_state"


_UNREAD = "read_at IS NULL"


class Notification(IdMixin, TimestampMixin, Base):
    __tablename__ = "notification"
    __table_args__ = (
        # Newest-first pages with a (created_at, id) cursor.
        Index("notification_user_id_created_at_idx", "user_id", "created_at", "id"),
        # unread-count and ?unread=true touch only unread rows.
        Index(
            "notification_user_id_unread_idx",
            "user_id",
            postgresql_where=text(_UNREAD),
            sqlite_where=text(_UNREAD),
        ),
    )

    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("user_account.id", ondelete="CASCADE"))
    type: Mapped[str] = mapped_column(String(40))
    title: Mapped[str] = mapped_column(String(200))
    body: Mapped[str] = mapped_column(String(2000))
    upload_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("upload.id", ondelete="SET NULL")
    )
    report_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("report.id", ondelete="SET NULL")
    )
    data: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    read_at: Mapped[datetime | None]


class StreamEvent(Base):
    """One live event, kept for a while so that a reconnecting client gets what it missed.

    The id is the SSE ``id:`` (``Last-Event-ID``): increasing, so "after N" is one range scan.
    """

    __tablename__ = "stream_event"
    __table_args__ = (
        Index("stream_event_user_id_id_idx", "user_id", "id"),
        Index("stream_event_created_at_idx", "created_at"),
    )

    # SQLite assigns increasing ids only to an INTEGER PRIMARY KEY.
    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer(), "sqlite"), primary_key=True, autoincrement=True
    )
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("user_account.id", ondelete="CASCADE"))
    event: Mapped[str] = mapped_column(String(32))
    data: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class StreamTicket(Base):
    """A one-time credential for ``GET /notifications/stream?ticket=`` (EventSource cannot send
    headers). Only its SHA-256 is stored; it lives 60 s and works once."""

    __tablename__ = "stream_ticket"
    __table_args__ = (Index("stream_ticket_expires_at_idx", "expires_at"),)

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("user_account.id", ondelete="CASCADE"))
    #: The sign-in that asked for the ticket: the stream ends with it.
    session_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("login_session.id", ondelete="CASCADE")
    )
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime]
    used_at: Mapped[datetime | None]
