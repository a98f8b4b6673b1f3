"""Upload sessions, their declared files, stored chunks and the timeline of state changes."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Date,
    Enum,
    ForeignKey,
    Index,
    Integer,
    PrimaryKeyConstraint,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from relaypacs.db.base import Base, IdMixin, TimestampMixin, utcnow
from relaypacs.users.models import ServiceLevel

#: Longest ``Upload.failure_reason`` stored (the column's size); longer reasons are cut.
FAILURE_REASON_LENGTH = 500


class UploadState(StrEnum):
    """The lifecycle of DESIGN.md: created → receiving → assembling → validated → queued →
    forwarding → delivered, with the side exits rejected, partially_delivered, failed,
    cancelled and expired."""

    created = "created"
    receiving = "receiving"
    assembling = "assembling"
    validated = "validated"
    queued = "queued"
    forwarding = "forwarding"
    delivered = "delivered"
    rejected = "rejected"
    partially_delivered = "partially_delivered"
    failed = "failed"
    cancelled = "cancelled"
    expired = "expired"


#: States in which chunks are accepted.
RECEIVING_STATES = frozenset({UploadState.created, UploadState.receiving})
#: States that never change again by themselves (the expiry job ignores them).
FINAL_STATES = frozenset(
    {
        UploadState.delivered,
        UploadState.rejected,
        UploadState.partially_delivered,
        UploadState.cancelled,
        UploadState.expired,
    }
)


class FileStatus(StrEnum):
    """What validation made of one uploaded file."""

    pending = "pending"
    valid = "valid"  # one DICOM instance, or a ZIP whose entries all validated
    partial = "partial"  # a ZIP with some valid instances and some problems
    invalid = "invalid"  # nothing usable in it
    skipped = "skipped"  # a DICOMDIR: an index, not an instance


def _state_enum() -> Enum:
    return Enum(UploadState, native_enum=False, length=32, validate_strings=True)


class Upload(IdMixin, TimestampMixin, Base):
    __tablename__ = "upload"
    __table_args__ = (
        Index("upload_owner_id_created_at_idx", "owner_id", "created_at"),
        Index("upload_duplicate_key_idx", "owner_id", "duplicate_key"),
        Index("upload_state_expires_at_idx", "state", "expires_at"),
    )

    owner_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("user_account.id", ondelete="CASCADE"))
    state: Mapped[UploadState] = mapped_column(_state_enum(), default=UploadState.created)
    # SHA-256 of the upload token; the token itself is shown once and never stored.
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    # Set when the owner signed out everywhere, changed the password or was disabled: the token
    # acts for its owner, so it ends with their sign-ins. Kept apart from token_hash so that the
    # refusal can say why (upload_token_revoked); a new token for the upload clears it.
    token_revoked_at: Mapped[datetime | None]
    expires_at: Mapped[datetime]
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    completed_at: Mapped[datetime | None]
    purged_at: Mapped[datetime | None]

    patient_name: Mapped[str] = mapped_column(String(200))
    patient_id: Mapped[str | None] = mapped_column(String(64))
    study_date: Mapped[date] = mapped_column(Date)
    modality: Mapped[str] = mapped_column(String(16))
    service_level: Mapped[ServiceLevel] = mapped_column(
        Enum(ServiceLevel, native_enum=False, length=20, validate_strings=True)
    )
    study_description: Mapped[str | None] = mapped_column(String(200))
    clinical_history: Mapped[str | None] = mapped_column(Text)
    # Normalised patient name + study date + modality: the duplicate-study rule compares this.
    duplicate_key: Mapped[str] = mapped_column(String(64))
    forced: Mapped[bool] = mapped_column(Boolean, default=False, server_default=text("false"))

    chunk_size: Mapped[int] = mapped_column(Integer)
    total_bytes: Mapped[int] = mapped_column(BigInteger)
    file_count: Mapped[int] = mapped_column(Integer)
    instance_count: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    # Header/declaration mismatches found during validation: codes only, never the values.
    warnings: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    failure_reason: Mapped[str | None] = mapped_column(String(FAILURE_REASON_LENGTH))


class UploadFile(IdMixin, Base):
    __tablename__ = "upload_file"
    __table_args__ = (UniqueConstraint("upload_id", "position"),)

    upload_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("upload.id", ondelete="CASCADE"))
    position: Mapped[int] = mapped_column(Integer)
    # Display data only: never part of a path or store key.
    name: Mapped[str] = mapped_column(String(255))
    size: Mapped[int] = mapped_column(BigInteger)
    chunk_count: Mapped[int] = mapped_column(Integer)
    status: Mapped[FileStatus] = mapped_column(
        Enum(FileStatus, native_enum=False, length=16, validate_strings=True),
        default=FileStatus.pending,
    )
    sha256: Mapped[str | None] = mapped_column(String(64))
    store_key: Mapped[str | None] = mapped_column(String(300))
    # Per entry outcome: [{"entry": name-or-null, "status": ..., "reason": ...}].
    problems: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)


class UploadChunk(Base):
    """One stored chunk. The primary key is the idempotency rule: a chunk is stored once."""

    __tablename__ = "upload_chunk"
    __table_args__ = (
        PrimaryKeyConstraint("file_id", "chunk_index"),
        Index("upload_chunk_upload_id_idx", "upload_id"),
    )

    file_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("upload_file.id", ondelete="CASCADE"))
    chunk_index: Mapped[int] = mapped_column(Integer)
    upload_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("upload.id", ondelete="CASCADE"))
    size: Mapped[int] = mapped_column(Integer)
    md5: Mapped[str] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class UploadEvent(IdMixin, Base):
    """The timeline: one row per state change (and notable events), never patient data."""

    __tablename__ = "upload_event"
    __table_args__ = (Index("upload_event_upload_id_at_idx", "upload_id", "at"),)

    upload_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("upload.id", ondelete="CASCADE"))
    state: Mapped[UploadState] = mapped_column(_state_enum())
    at: Mapped[datetime] = mapped_column(default=utcnow)
    detail: Mapped[str | None] = mapped_column(String(500))


class UploadIdempotency(Base):
    """An ``Idempotency-Key`` of ``POST /uploads``: a repeat gets the upload it created.

    The primary key is the rule that two requests with one key (even at the same moment) make
    one upload. The key itself is not stored, only its SHA-256; the upload token is kept sealed
    with a pad only the key can produce (see ``uploads.service``), so this table alone never
    yields a usable token.
    """

    __tablename__ = "upload_idempotency"
    __table_args__ = (
        PrimaryKeyConstraint("owner_id", "key_hash"),
        Index("upload_idempotency_upload_id_idx", "upload_id"),
    )

    owner_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("user_account.id", ondelete="CASCADE"))
    key_hash: Mapped[str] = mapped_column(String(64))
    # SHA-256 of the request body as parsed (canonical JSON): same key, other body is refused.
    request_hash: Mapped[str] = mapped_column(String(64))
    # Set in the same transaction that claims the key; NULL is never seen committed.
    upload_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("upload.id", ondelete="CASCADE"))
    token_sealed: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
