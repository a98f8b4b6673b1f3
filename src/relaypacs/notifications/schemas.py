"""Notification bodies, pages and stream tickets."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class NotificationOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    type: str
    title: str
    body: str
    upload_id: uuid.UUID | None
    report_id: uuid.UUID | None
    data: dict[str, Any]
    read: bool
    read_at: datetime | None
    created_at: datetime


class NotificationPage(BaseModel):
    items: list[NotificationOut]
    next_cursor: str | None = Field(description="Pass as ?cursor= for the next (older) page")


class NotificationUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    read: bool


class UnreadCount(BaseModel):
    count: int


class ReadAllResult(BaseModel):
    marked_read: int
    count: int = Field(description="Unread notifications left (0)")


class StreamTicketOut(BaseModel):
    ticket: str = Field(description="GET /notifications/stream?ticket=<this>; once, within 60 s")
    expires_at: datetime
    expires_in: int
