"""Sign-in sessions, refresh tokens, revoked access tokens and 2FA recovery codes."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from relaypacs.db.base import Base, IdMixin, TimestampMixin


class LoginSession(IdMixin, TimestampMixin, Base):
    """One sign-in: the family of refresh tokens that descend from it.

    Its id is the ``sid`` claim of every access token issued in it, so revoking the session
    (logout, refresh-token reuse, password change) also ends those access tokens at once.
    """

    __tablename__ = "login_session"

    user_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("user_account.id", ondelete="CASCADE"), index=True
    )
    ip_address: Mapped[str | None] = mapped_column(String(45))
    user_agent: Mapped[str | None] = mapped_column(String(300))
    revoked_at: Mapped[datetime | None]
    revoked_reason: Mapped[str | None] = mapped_column(String(40))


class RefreshToken(IdMixin, TimestampMixin, Base):
    __tablename__ = "refresh_token"

    session_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("login_session.id", ondelete="CASCADE"), index=True
    )
    # SHA-256 of the token: the token has 256 bits of entropy, so a slow hash adds nothing.
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    expires_at: Mapped[datetime]
    # Set when the token is exchanged; presenting it again is reuse (a stolen copy), except
    # within the grace window of RELAYPACS_REFRESH_REUSE_GRACE_SECONDS while its successor is
    # still unused: then the answer that was lost is given again (the same successor).
    used_at: Mapped[datetime | None]
    # The token this one was exchanged for, and that token sealed with a pad only this token
    # can produce (auth.tokens.seal_successor): the stored row alone never yields a token.
    successor_id: Mapped[uuid.UUID | None]
    successor_sealed: Mapped[str | None] = mapped_column(String(64))


class RevokedAccessToken(Base):
    """Access tokens ended before their expiry (logout), by ``jti``."""

    __tablename__ = "revoked_access_token"

    jti: Mapped[str] = mapped_column(String(64), primary_key=True)
    expires_at: Mapped[datetime] = mapped_column(index=True)
    revoked_at: Mapped[datetime]


class RecoveryCode(IdMixin, TimestampMixin, Base):
    __tablename__ = "totp_recovery_code"
    __table_args__ = (Index("totp_recovery_code_user_id_idx", "user_id"),)

    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("user_account.id", ondelete="CASCADE"))
    code_hash: Mapped[str] = mapped_column(String(64))
    used_at: Mapped[datetime | None]
