"""User accounts: identity, role, credentials, second factor and upload preferences."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import Boolean, CheckConstraint, Enum, Integer, String, text
from sqlalchemy.orm import Mapped, mapped_column

from relaypacs.config import KIB, MIB
from relaypacs.db.base import Base, IdMixin, TimestampMixin, utcnow

# Lives without SQLAlchemy for the CLI's sake; re-exported: the rest of the code imports it here.
from relaypacs.users.roles import Role as Role


class ServiceLevel(StrEnum):
    """How urgently a study must be read (PRD FR-UPLOAD service levels)."""

    stat = "stat"
    emergency = "emergency"
    routine = "routine"


#: Characters, after trimming; room for long multi-part names, not for free text.
MAX_FULL_NAME_LENGTH = 200

MIN_CHUNK_SIZE = 512 * KIB
MAX_CHUNK_SIZE = 10 * MIB
DEFAULT_CHUNK_SIZE = 1 * MIB

#: Roles anyone may give themselves at registration; the others need an admin or the CLI.
SELF_REGISTRATION_ROLES = frozenset({Role.clinician, Role.radiographer})


class User(IdMixin, TimestampMixin, Base):
    __tablename__ = "user_account"
    __table_args__ = (
        CheckConstraint(
            f"chunk_size >= {MIN_CHUNK_SIZE} AND chunk_size <= {MAX_CHUNK_SIZE}",
            name="chunk_size_range",
        ),
    )

    username: Mapped[str] = mapped_column(String(50))
    # Uniqueness is case-insensitive on every backend: compare on a lower-cased copy.
    username_key: Mapped[str] = mapped_column(String(50), unique=True)
    email: Mapped[str] = mapped_column(String(320), unique=True)
    # Personal data (PRD FR-SETTINGS-01): in the export, never in log lines or audit details.
    full_name: Mapped[str | None] = mapped_column(String(MAX_FULL_NAME_LENGTH))
    password_hash: Mapped[str] = mapped_column(String(100))
    role: Mapped[Role] = mapped_column(
        Enum(Role, native_enum=False, length=20, validate_strings=True)
    )
    is_active: Mapped[bool] = mapped_column(Boolean, default=True, server_default=text("true"))
    must_change_password: Mapped[bool] = mapped_column(
        Boolean, default=False, server_default=text("false")
    )
    # Bumped on password change and disable: every access token carrying an older value dies.
    token_version: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    last_login_at: Mapped[datetime | None]

    failed_login_count: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    locked_until: Mapped[datetime | None]

    totp_secret: Mapped[str | None] = mapped_column(String(64))
    totp_enabled: Mapped[bool] = mapped_column(Boolean, default=False, server_default=text("false"))
    # The last accepted 30-second step: a code is accepted at most once per step.
    totp_last_step: Mapped[int | None] = mapped_column(Integer)

    default_service_level: Mapped[ServiceLevel] = mapped_column(
        Enum(ServiceLevel, native_enum=False, length=20, validate_strings=True),
        default=ServiceLevel.routine,
        server_default=ServiceLevel.routine.value,
    )
    chunk_size: Mapped[int] = mapped_column(
        Integer, default=DEFAULT_CHUNK_SIZE, server_default=text(str(DEFAULT_CHUNK_SIZE))
    )
    duplicate_warnings: Mapped[bool] = mapped_column(
        Boolean, default=True, server_default=text("true")
    )
