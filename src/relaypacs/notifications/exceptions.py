"""Errors of notifications and their live stream."""

from __future__ import annotations

from relaypacs.errors import BadRequest, NotFound, TooManyRequests, Unauthorized


class NotificationNotFound(NotFound):
    code = "notification_not_found"
    title = "No such notification"


class InvalidCursor(BadRequest):
    code = "invalid_cursor"
    title = "The cursor is not one this server gave out"


class InvalidStreamTicket(Unauthorized):
    code = "invalid_stream_ticket"
    title = "The stream ticket is unknown, expired or already used"


class TokenInUrl(BadRequest):
    code = "token_in_url"
    title = "Never put an access token in a URL: use a one-time stream ticket"


class InvalidLastEventId(BadRequest):
    code = "invalid_last_event_id"
    title = "Last-Event-ID must be an event id this server sent"


class TooManyStreams(TooManyRequests):
    code = "too_many_streams"
    title = "Too many open notification streams"

    def __init__(self, detail: str | None = None, **extra: object) -> None:
        super().__init__(5, detail)
        self.extra.update(extra)
