"""HTTP layer of notifications: list, read state, unread count, stream tickets, the SSE stream."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Header, Query, Request, status

from relaypacs.auth.dependencies import AUTH_ERRORS, AccessClaimsDep, CurrentUser, get_resources
from relaypacs.auth.service import AuthService
from relaypacs.db.session import SessionDep, get_sessionmaker
from relaypacs.errors import IdPath, Unauthorized, parse_id, problem_responses
from relaypacs.notifications import service
from relaypacs.notifications.exceptions import (
    InvalidCursor,
    InvalidLastEventId,
    InvalidStreamTicket,
    NotificationNotFound,
    TokenInUrl,
    TooManyStreams,
)
from relaypacs.notifications.live import EventHub
from relaypacs.notifications.schemas import (
    NotificationOut,
    NotificationPage,
    NotificationUpdate,
    ReadAllResult,
    StreamTicketOut,
    UnreadCount,
)
from relaypacs.notifications.sse import EventSourceResponse
from relaypacs.users.models import User
from relaypacs.users.service import register_export_section

router = APIRouter(prefix="/notifications", tags=["notifications"])

register_export_section("notifications", service.export_section)

# Query parameters that would put a long-lived credential into logs and browser history.
_TOKEN_PARAMETERS = ("access_token", "token", "refresh_token", "authorization")


@router.get(
    "",
    response_model=NotificationPage,
    summary="Your notifications, newest first (cursor paging)",
    responses=problem_responses(*AUTH_ERRORS, InvalidCursor),
)
async def list_notifications(
    user: CurrentUser,
    session: SessionDep,
    unread: Annotated[bool | None, Query(description="true: unread only; false: read only")] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> NotificationPage:
    rows, next_cursor = await service.list_notifications(
        session, user, unread=unread, cursor=cursor, limit=limit
    )
    return NotificationPage(
        items=[service.notification_out(n) for n in rows], next_cursor=next_cursor
    )


@router.get(
    "/unread-count",
    response_model=UnreadCount,
    summary="How many notifications you have not read",
    responses=problem_responses(*AUTH_ERRORS),
)
async def unread_count(user: CurrentUser, session: SessionDep) -> UnreadCount:
    return UnreadCount(count=await service.unread_count(session, user))


@router.post(
    "/read-all",
    response_model=ReadAllResult,
    summary="Mark all your notifications read",
    responses=problem_responses(*AUTH_ERRORS),
)
async def read_all(user: CurrentUser, session: SessionDep) -> ReadAllResult:
    changed = await service.mark_all_read(session, user)
    await session.commit()
    return ReadAllResult(marked_read=changed, count=0)


@router.patch(
    "/{notification_id}",
    response_model=NotificationOut,
    summary="Mark one notification read or unread",
    responses=problem_responses(*AUTH_ERRORS, NotificationNotFound),
)
async def update_notification(
    notification_id: IdPath, body: NotificationUpdate, user: CurrentUser, session: SessionDep
) -> NotificationOut:
    wanted = parse_id(notification_id, NotificationNotFound)
    notification = await service.set_read(session, user, wanted, read=body.read)
    await session.commit()
    return service.notification_out(notification)


@router.post(
    "/stream-ticket",
    status_code=status.HTTP_201_CREATED,
    response_model=StreamTicketOut,
    summary="A one-time ticket (60 s) for GET /notifications/stream?ticket=",
    responses=problem_responses(*AUTH_ERRORS),
)
async def create_stream_ticket(
    user: CurrentUser, claims: AccessClaimsDep, session: SessionDep
) -> StreamTicketOut:
    ticket, expires_at = await service.issue_stream_ticket(session, user, claims.session_id)
    await session.commit()
    return StreamTicketOut(ticket=ticket, expires_at=expires_at, expires_in=service.TICKET_SECONDS)


def get_event_hub(request: Request) -> EventHub:
    hub: EventHub = request.app.state.event_hub
    return hub


@router.get(
    "/stream",
    summary="Live events (Server-Sent Events): notification, unread_count, upload_state",
    description=(
        "Authenticate with a one-time `?ticket=` from POST /notifications/stream-ticket (what a "
        "browser's EventSource can do) or an `Authorization: Bearer` header; an access token in "
        "the URL is refused. `Last-Event-ID` (header, or `?last_event_id=` for a new "
        "EventSource) replays the events logged after it. When idle, an unnumbered `heartbeat` "
        'event (`{"every": seconds}`, 15 s by default) lets a client tell a quiet stream from a '
        "dead connection."
    ),
    response_class=EventSourceResponse,
    # EventSourceResponse has no default status code, which FastAPI needs to build the schema.
    status_code=200,
    responses={
        200: {"content": {"text/event-stream": {"schema": {"type": "string"}}}},
        **problem_responses(
            *AUTH_ERRORS, InvalidStreamTicket, TokenInUrl, InvalidLastEventId, TooManyStreams
        ),
    },
)
async def stream(
    request: Request,
    ticket: Annotated[str | None, Query(max_length=200)] = None,
    last_event_id_query: Annotated[str | None, Query(alias="last_event_id", max_length=20)] = None,
    last_event_id_header: Annotated[str | None, Header(alias="Last-Event-ID")] = None,
) -> EventSourceResponse:
    if any(name in request.query_params for name in _TOKEN_PARAMETERS):
        raise TokenInUrl()
    last_event_id = _parse_last_event_id(last_event_id_header or last_event_id_query)
    user, login_session_id = await _stream_user(request, ticket)
    resources = get_resources(request)
    hub = get_event_hub(request)
    connection = hub.open(user.id)
    body = service.event_stream(
        hub,
        get_sessionmaker(request),
        connection,
        last_event_id=last_event_id,
        heartbeat_seconds=resources.settings.sse_heartbeat_seconds,
        login_session_id=login_session_id,
    )
    return EventSourceResponse(
        body,
        send_timeout=resources.settings.sse_send_timeout_seconds,
        on_close=lambda: hub.close(connection),
    )


def _parse_last_event_id(value: str | None) -> int | None:
    if value is None or value == "":
        return None
    if not value.isdigit() or len(value) > 18:
        raise InvalidLastEventId()
    return int(value)


async def _stream_user(request: Request, ticket: str | None) -> tuple[User, uuid.UUID | None]:
    """The stream's user and sign-in, from a ticket or a bearer header, in a session closed at
    once (a stream can stay open for hours and must not hold a database connection)."""
    sessionmaker = get_sessionmaker(request)
    authorization = request.headers.get("authorization", "")
    async with sessionmaker() as session:
        if ticket is not None:
            found = await service.redeem_stream_ticket(session, ticket)
            await session.commit()
            return found
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise Unauthorized(
                "Send ?ticket= (POST /notifications/stream-ticket) or a bearer token"
            )
        resources = get_resources(request)
        auth = AuthService(
            session,
            settings=resources.settings,
            keyring=resources.keyring,
            rate_limiter=resources.rate_limiter,
            request=request,
        )
        user, claims = await auth.authenticate(token.strip())
        if user.must_change_password:
            raise Unauthorized("Change the one-time password first")
        return user, claims.session_id
