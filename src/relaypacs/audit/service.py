"""Writing and reading the audit log.

Every domain records security events and accesses to patient data with :func:`record_audit`,
in the same transaction as the change it describes (so the record and the change commit together)::

    await record_audit(session, "upload_viewed", request=request, actor_id=user.id,
                       target_type="upload", target_id=str(upload.id))

``details`` is for ids and outcomes: never passwords, tokens, codes or patient data.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Sequence
from typing import Any

from fastapi import Request
from sqlalchemy.ext.asyncio import AsyncSession

from relaypacs.audit.models import AuditEvent
from relaypacs.audit.repository import AuditFilter, AuditRepository
from relaypacs.db.base import utcnow

_FORBIDDEN_DETAIL_MARKERS = ("password", "token", "secret", "totp_code", "recovery_code")


def client_ip(request: Request | None) -> str | None:
    if request is None or request.client is None:
        return None
    return request.client.host[:45]


def _user_agent(request: Request | None) -> str | None:
    if request is None:
        return None
    agent = request.headers.get("user-agent")
    return agent[:300] if agent else None


def _request_id(request: Request | None) -> str | None:
    if request is None:
        return None
    value = getattr(request.state, "request_id", None)
    return str(value) if value else None


def _check_details(details: dict[str, Any]) -> dict[str, Any]:
    for key in details:
        if any(marker in key.lower() for marker in _FORBIDDEN_DETAIL_MARKERS):
            # A programming error: secrets must never reach the (permanent) audit log.
            raise ValueError(f"audit details must not carry secrets ({key!r})")
    return details


async def record_audit(
    session: AsyncSession,
    action: str,
    *,
    request: Request | None,
    actor_id: uuid.UUID | None,
    target_type: str | None = None,
    target_id: str | None = None,
    details: dict[str, Any] | None = None,
) -> None:
    """Append one event to the audit log (flushed now, committed by the caller's boundary)."""
    repository = AuditRepository(session)
    repository.add(
        AuditEvent(
            occurred_at=utcnow(),
            actor_id=actor_id,
            action=action,
            target_type=target_type,
            target_id=target_id,
            ip_address=client_ip(request),
            user_agent=_user_agent(request),
            request_id=_request_id(request),
            details=_check_details(dict(details or {})),
        )
    )
    await session.flush()


async def list_events(
    session: AsyncSession, criteria: AuditFilter, *, limit: int, offset: int
) -> tuple[int, Sequence[AuditEvent]]:
    repository = AuditRepository(session)
    return await repository.count(criteria), await repository.list(
        criteria, limit=limit, offset=offset
    )


def stream_events(session: AsyncSession, criteria: AuditFilter) -> AsyncIterator[AuditEvent]:
    return AuditRepository(session).stream(criteria)


async def events_about_user(session: AsyncSession, user_id: uuid.UUID) -> Sequence[AuditEvent]:
    return await AuditRepository(session).for_actor_or_target(user_id)
