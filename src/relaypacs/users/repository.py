"""All SQL of user accounts."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import Select, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from relaypacs.users.models import Role, User


class UserRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get(self, user_id: uuid.UUID) -> User | None:
        return await self.session.get(User, user_id)

    async def get_by_login(self, login: str) -> User | None:
        """By username (case-insensitive) or, when it looks like one, by email."""
        key = login.strip().lower()
        column = User.email if "@" in key else User.username_key
        return (await self.session.scalars(select(User).where(column == key))).one_or_none()

    async def username_exists(self, username_key: str) -> bool:
        statement = select(User.id).where(User.username_key == username_key)
        return (await self.session.scalar(statement)) is not None

    async def email_exists(self, email: str, *, excluding: uuid.UUID | None = None) -> bool:
        statement = select(User.id).where(User.email == email)
        if excluding is not None:
            statement = statement.where(User.id != excluding)
        return (await self.session.scalar(statement)) is not None

    async def add(self, user: User) -> User:
        self.session.add(user)
        await self.session.flush()
        return user

    async def flush(self) -> None:
        await self.session.flush()

    def _filtered(
        self, *, role: Role | None, is_active: bool | None, query: str | None
    ) -> Select[User]:
        statement = select(User)
        if role is not None:
            statement = statement.where(User.role == role)
        if is_active is not None:
            statement = statement.where(User.is_active == is_active)
        if query:
            escaped = query.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            pattern = "%" + escaped + "%"
            statement = statement.where(
                or_(
                    User.username_key.like(pattern, escape="\\"),
                    User.email.like(pattern, escape="\\"),
                    # SQLite's lower() folds ASCII only; PostgreSQL's folds every letter.
                    func.lower(User.full_name).like(pattern, escape="\\"),
                )
            )
        return statement

    async def list(
        self,
        *,
        role: Role | None,
        is_active: bool | None,
        query: str | None,
        limit: int,
        offset: int,
    ) -> tuple[int, Sequence[User]]:
        statement = self._filtered(role=role, is_active=is_active, query=query)
        total = await self.session.scalar(select(func.count()).select_from(statement.subquery()))
        users = await self.session.scalars(
            statement.order_by(User.username_key).limit(limit).offset(offset)
        )
        return int(total or 0), users.all()

    async def count_active_admins(self, *, lock: bool = False) -> int:
        """``lock``: the active admins' rows stay locked until the transaction ends, so that two
        admins demoting each other at once cannot both see the other still there (PostgreSQL;
        SQLite's transactions already take turns)."""
        if not lock:
            statement = select(func.count()).where(
                User.role == Role.admin, User.is_active.is_(True)
            )
            return int(await self.session.scalar(statement) or 0)
        locked = (
            select(User.id)
            .where(User.role == Role.admin, User.is_active.is_(True))
            .order_by(User.id)
            .with_for_update()
        )
        return len((await self.session.scalars(locked)).all())

    async def any_admin(self) -> bool:
        statement = select(User.id).where(User.role == Role.admin).limit(1)
        return (await self.session.scalar(statement)) is not None

    async def count_failed_login(self, user_id: uuid.UUID) -> int:
        """Count one more consecutive failure atomically; returns the new count."""
        count = await self.session.scalar(
            update(User)
            .where(User.id == user_id)
            .values(failed_login_count=User.failed_login_count + 1)
            .returning(User.failed_login_count)
            .execution_options(synchronize_session=False)
        )
        return int(count or 0)

    async def lock(self, user_id: uuid.UUID, until: datetime) -> None:
        await self.session.execute(
            update(User)
            .where(User.id == user_id)
            .values(locked_until=until)
            .execution_options(synchronize_session=False)
        )

    async def claim_totp_step(self, user_id: uuid.UUID, step: int) -> bool:
        """Accept a TOTP step only if it is newer than the last accepted one (no replay)."""
        result = await self.session.execute(
            update(User)
            .where(
                User.id == user_id,
                or_(User.totp_last_step.is_(None), User.totp_last_step < step),
            )
            .values(totp_last_step=step)
            .execution_options(synchronize_session=False)
        )
        claimed = bool(getattr(result, "rowcount", 0))
        return claimed
