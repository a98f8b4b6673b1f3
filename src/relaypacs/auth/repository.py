"""All SQL of sign-in sessions, refresh tokens, the access-token denylist and recovery codes."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, exists, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from relaypacs.auth.models import LoginSession, RecoveryCode, RefreshToken, RevokedAccessToken
from relaypacs.users.models import User


@dataclass(frozen=True)
class Principal:
    user: User
    session_live: bool
    token_denied: bool


class AuthRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def load_principal(
        self, user_id: uuid.UUID, session_id: uuid.UUID, jti: str
    ) -> Principal | None:
        """The user row, whether the sign-in is still live and whether the token is denied.

        One round trip per authenticated request, so revocation and role changes act at once.
        """
        session_live = exists().where(
            LoginSession.id == session_id,
            LoginSession.user_id == user_id,
            LoginSession.revoked_at.is_(None),
        )
        denied = exists().where(RevokedAccessToken.jti == jti)
        row = (
            await self.session.execute(
                select(User, session_live.label("live"), denied.label("denied")).where(
                    User.id == user_id
                )
            )
        ).one_or_none()
        if row is None:
            return None
        return Principal(user=row[0], session_live=bool(row[1]), token_denied=bool(row[2]))

    async def add_session(self, login_session: LoginSession) -> LoginSession:
        self.session.add(login_session)
        await self.session.flush()
        return login_session

    async def add_refresh_token(self, token: RefreshToken) -> None:
        self.session.add(token)
        await self.session.flush()

    async def find_refresh_token(self, token_hash: str) -> tuple[RefreshToken, LoginSession] | None:
        statement = (
            select(RefreshToken, LoginSession)
            .join(LoginSession, LoginSession.id == RefreshToken.session_id)
            .where(RefreshToken.token_hash == token_hash)
        )
        row = (await self.session.execute(statement)).one_or_none()
        return (row[0], row[1]) if row is not None else None

    async def get_refresh_token(self, token_id: uuid.UUID) -> RefreshToken | None:
        """The row as committed now, not as this session cached it."""
        statement = (
            select(RefreshToken)
            .where(RefreshToken.id == token_id)
            .execution_options(populate_existing=True)
        )
        return (await self.session.scalars(statement)).first()

    async def link_successor(
        self, token_id: uuid.UUID, successor_id: uuid.UUID, successor_sealed: str
    ) -> None:
        await self.session.execute(
            update(RefreshToken)
            .where(RefreshToken.id == token_id)
            .values(successor_id=successor_id, successor_sealed=successor_sealed)
            .execution_options(synchronize_session=False)
        )

    async def delete_expired_refresh_tokens(self, user_id: uuid.UUID, now: datetime) -> None:
        """Drop a user's refresh tokens past expiry: they can neither refresh nor betray reuse."""
        sessions = select(LoginSession.id).where(LoginSession.user_id == user_id)
        await self.session.execute(
            delete(RefreshToken)
            .where(RefreshToken.session_id.in_(sessions), RefreshToken.expires_at < now)
            .execution_options(synchronize_session=False)
        )

    async def mark_refresh_token_used(self, token_id: uuid.UUID, now: datetime) -> bool:
        """Exchange a token exactly once, even when two requests race with the same token."""
        result = await self.session.execute(
            update(RefreshToken)
            .where(RefreshToken.id == token_id, RefreshToken.used_at.is_(None))
            .values(used_at=now)
            .execution_options(synchronize_session=False)
        )
        return bool(getattr(result, "rowcount", 0))

    async def revoke_session(self, session_id: uuid.UUID, now: datetime, reason: str) -> None:
        await self.session.execute(
            update(LoginSession)
            .where(LoginSession.id == session_id, LoginSession.revoked_at.is_(None))
            .values(revoked_at=now, revoked_reason=reason)
            .execution_options(synchronize_session=False)
        )

    async def revoke_user_sessions(self, user_id: uuid.UUID, now: datetime, reason: str) -> int:
        result = await self.session.execute(
            update(LoginSession)
            .where(LoginSession.user_id == user_id, LoginSession.revoked_at.is_(None))
            .values(revoked_at=now, revoked_reason=reason)
            .execution_options(synchronize_session=False)
        )
        return int(getattr(result, "rowcount", 0))

    async def sessions_of(self, user_id: uuid.UUID) -> Sequence[LoginSession]:
        statement = (
            select(LoginSession)
            .where(LoginSession.user_id == user_id)
            .order_by(LoginSession.created_at)
        )
        return (await self.session.scalars(statement)).all()

    async def deny_access_token(self, jti: str, expires_at: datetime, now: datetime) -> None:
        if await self.session.get(RevokedAccessToken, jti) is None:
            self.session.add(RevokedAccessToken(jti=jti, expires_at=expires_at, revoked_at=now))
        # Entries past their token's expiry protect nothing: drop them as we go.
        await self.session.execute(
            delete(RevokedAccessToken)
            .where(RevokedAccessToken.expires_at < now)
            .execution_options(synchronize_session=False)
        )
        await self.session.flush()

    async def replace_recovery_codes(self, user_id: uuid.UUID, code_hashes: Sequence[str]) -> None:
        await self.delete_recovery_codes(user_id)
        self.session.add_all(RecoveryCode(user_id=user_id, code_hash=h) for h in code_hashes)
        await self.session.flush()

    async def delete_recovery_codes(self, user_id: uuid.UUID) -> None:
        await self.session.execute(
            delete(RecoveryCode)
            .where(RecoveryCode.user_id == user_id)
            .execution_options(synchronize_session=False)
        )

    async def use_recovery_code(self, user_id: uuid.UUID, code_hash: str, now: datetime) -> bool:
        result = await self.session.execute(
            update(RecoveryCode)
            .where(
                RecoveryCode.user_id == user_id,
                RecoveryCode.code_hash == code_hash,
                RecoveryCode.used_at.is_(None),
            )
            .values(used_at=now)
            .execution_options(synchronize_session=False)
        )
        return bool(getattr(result, "rowcount", 0))

    async def recovery_code_counts(self, user_id: uuid.UUID) -> tuple[int, int]:
        """(total, unused)."""
        statement = select(func.count(), func.count().filter(RecoveryCode.used_at.is_(None))).where(
            RecoveryCode.user_id == user_id
        )
        total, unused = (await self.session.execute(statement)).one()
        return int(total), int(unused)
