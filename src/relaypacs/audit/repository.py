"""All SQL of the audit log. Rows are only ever inserted (the database refuses the rest)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Select, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from relaypacs.audit.models import AuditEvent


@dataclass(frozen=True)
class AuditFilter:
    actor_id: uuid.UUID | None = None
    action: str | None = None
    target_type: str | None = None
    target_id: str | None = None
    since: datetime | None = None
    until: datetime | None = None


class AuditRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    def add(self, event: AuditEvent) -> None:
        self.session.add(event)

    def _filtered(self, criteria: AuditFilter) -> Select[AuditEvent]:
        statement = select(AuditEvent)
        if criteria.actor_id is not None:
            statement = statement.where(AuditEvent.actor_id == criteria.actor_id)
        if criteria.action is not None:
            statement = statement.where(AuditEvent.action == criteria.action)
        if criteria.target_type is not None:
            statement = statement.where(AuditEvent.target_type == criteria.target_type)
        if criteria.target_id is not None:
            statement = statement.where(AuditEvent.target_id == criteria.target_id)
        if criteria.since is not None:
            statement = statement.where(AuditEvent.occurred_at >= criteria.since)
        if criteria.until is not None:
            statement = statement.where(AuditEvent.occurred_at < criteria.until)
        return statement

    async def count(self, criteria: AuditFilter) -> int:
        subquery = self._filtered(criteria).subquery()
        return int(await self.session.scalar(select(func.count()).select_from(subquery)) or 0)

    async def list(self, criteria: AuditFilter, *, limit: int, offset: int) -> Sequence[AuditEvent]:
        statement = (
            self._filtered(criteria)
            .order_by(AuditEvent.occurred_at.desc(), AuditEvent.id.desc())
            .limit(limit)
            .offset(offset)
        )
        return (await self.session.scalars(statement)).all()

    async def stream(self, criteria: AuditFilter, *, batch: int = 500) -> AsyncIterator[AuditEvent]:
        statement = self._filtered(criteria).order_by(AuditEvent.occurred_at, AuditEvent.id)
        result = await self.session.stream_scalars(statement.execution_options(yield_per=batch))
        async for event in result:
            yield event

    async def for_actor_or_target(self, user_id: uuid.UUID) -> Sequence[AuditEvent]:
        statement = (
            select(AuditEvent)
            .where(
                (AuditEvent.actor_id == user_id)
                | ((AuditEvent.target_type == "user") & (AuditEvent.target_id == str(user_id)))
            )
            .order_by(AuditEvent.occurred_at)
        )
        return (await self.session.scalars(statement)).all()
