"""Admin read access to the audit log: filtered pages and a CSV export."""

from __future__ import annotations

import csv
import io
import json
import uuid
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import StreamingResponse
from pydantic import AwareDatetime, BeforeValidator

from relaypacs.audit import service
from relaypacs.audit.models import AuditEvent
from relaypacs.audit.repository import AuditFilter
from relaypacs.audit.schemas import AuditEventOut, AuditPage
from relaypacs.auth.dependencies import ROLE_ERRORS, AdminUser
from relaypacs.db.base import utcnow
from relaypacs.db.session import SessionDep, get_sessionmaker
from relaypacs.errors import BadRequest, problem_responses
from relaypacs.users.schemas import NO_CONTROL_CHARACTERS

router = APIRouter(prefix="/admin/audit", tags=["admin"])

CSV_COLUMNS = (
    "occurred_at",
    "action",
    "actor_id",
    "target_type",
    "target_id",
    "ip_address",
    "user_agent",
    "request_id",
    "details",
)
# Cells starting with these run as formulas in spreadsheet programs (CSV injection).
_FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r", "\n")


class InvalidTimeRange(BadRequest):
    code = "invalid_time_range"
    title = "since must be before until"


def _iso_only(value: object) -> object:
    # Pydantic would read "0" or "1700000000" as a Unix time; the API documents ISO 8601 only.
    if isinstance(value, int | float) or (isinstance(value, str) and value.strip().isdigit()):
        raise ValueError("give an ISO 8601 date-time with a zone, e.g. 2024-05-01T00:00:00Z")
    return value


IsoDateTime = Annotated[AwareDatetime, BeforeValidator(_iso_only)]


def _criteria(
    actor_id: uuid.UUID | None,
    action: str | None,
    target_type: str | None,
    target_id: str | None,
    since: datetime | None,
    until: datetime | None,
) -> AuditFilter:
    if since is not None and until is not None and since >= until:
        raise InvalidTimeRange()
    return AuditFilter(
        actor_id=actor_id,
        action=action,
        target_type=target_type,
        target_id=target_id,
        since=since,
        until=until,
    )


ActorQuery = Annotated[uuid.UUID | None, Query(description="Who acted")]
ActionQuery = Annotated[
    str | None,
    Query(max_length=64, pattern=NO_CONTROL_CHARACTERS, description="e.g. login_failed"),
]
TargetTypeQuery = Annotated[str | None, Query(max_length=40, pattern=NO_CONTROL_CHARACTERS)]
TargetIdQuery = Annotated[str | None, Query(max_length=100, pattern=NO_CONTROL_CHARACTERS)]
SinceQuery = Annotated[IsoDateTime | None, Query(description="From this time (inclusive)")]
UntilQuery = Annotated[IsoDateTime | None, Query(description="Up to this time (exclusive)")]


@router.get(
    "",
    response_model=AuditPage,
    summary="Audit events, newest first",
    responses=problem_responses(*ROLE_ERRORS, InvalidTimeRange),
)
async def list_audit_events(
    admin: AdminUser,
    request: Request,
    session: SessionDep,
    actor_id: ActorQuery = None,
    action: ActionQuery = None,
    target_type: TargetTypeQuery = None,
    target_id: TargetIdQuery = None,
    since: SinceQuery = None,
    until: UntilQuery = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
) -> AuditPage:
    criteria = _criteria(actor_id, action, target_type, target_id, since, until)
    total, events = await service.list_events(session, criteria, limit=limit, offset=offset)
    # The log holds who touched which patient's study: reading it is an access like any other.
    await service.record_audit(
        session,
        "audit_viewed",
        request=request,
        actor_id=admin.id,
        details={"filters": _filters(criteria), "offset": offset, "count": len(events)},
    )
    await session.commit()
    return AuditPage(total=total, items=[AuditEventOut.model_validate(e) for e in events])


def _filters(criteria: AuditFilter) -> dict[str, str]:
    return {k: str(v) for k, v in vars(criteria).items() if v is not None}


def csv_safe(value: object) -> str:
    text = "" if value is None else str(value)
    if text.startswith(_FORMULA_PREFIXES):
        return "'" + text
    return text


def _row(event: AuditEvent) -> list[str]:
    values: list[object] = [
        event.occurred_at.isoformat(),
        event.action,
        event.actor_id,
        event.target_type,
        event.target_id,
        event.ip_address,
        event.user_agent,
        event.request_id,
        json.dumps(event.details, sort_keys=True) if event.details else "",
    ]
    return [csv_safe(v) for v in values]


@router.get(
    "/export.csv",
    summary="Audit events as CSV, oldest first (spreadsheet-safe)",
    response_class=StreamingResponse,
    responses={
        200: {"content": {"text/csv": {"schema": {"type": "string"}}}},
        **problem_responses(*ROLE_ERRORS, InvalidTimeRange),
    },
)
async def export_audit_events(
    admin: AdminUser,
    request: Request,
    session: SessionDep,
    actor_id: ActorQuery = None,
    action: ActionQuery = None,
    target_type: TargetTypeQuery = None,
    target_id: TargetIdQuery = None,
    since: SinceQuery = None,
    until: UntilQuery = None,
) -> StreamingResponse:
    criteria = _criteria(actor_id, action, target_type, target_id, since, until)
    # The export itself is a security event; record it before streaming starts.
    await service.record_audit(
        session,
        "audit_exported",
        request=request,
        actor_id=admin.id,
        details={"filters": _filters(criteria)},
    )
    await session.commit()
    sessionmaker = get_sessionmaker(request)

    async def rows() -> AsyncIterator[str]:
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(CSV_COLUMNS)
        # Its own session: the request's session may be closed before the body is streamed.
        async with sessionmaker() as stream_session:
            async for event in service.stream_events(stream_session, criteria):
                writer.writerow(_row(event))
                if buffer.tell() > 64 * 1024:
                    yield buffer.getvalue()
                    buffer.seek(0)
                    buffer.truncate()
        yield buffer.getvalue()

    filename = f"relaypacs_audit_{utcnow():%Y%m%dT%H%M%SZ}.csv"
    return StreamingResponse(
        rows(),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )
