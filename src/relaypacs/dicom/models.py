"""DICOM instances found in an upload, with their study/series identity and where they are kept."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum

from sqlalchemy import BigInteger, Enum, ForeignKey, Index, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from relaypacs.db.base import Base, IdMixin, TimestampMixin


class ForwardStatus(StrEnum):
    """Per-instance PACS outcome, written by the forwarding stage."""

    pending = "pending"
    stored = "stored"
    refused = "refused"


class DicomInstance(IdMixin, TimestampMixin, Base):
    """One validated instance (a whole uploaded file, or one entry of an uploaded ZIP).

    Column names are the DICOM keywords in snake_case.
    """

    __tablename__ = "dicom_instance"
    __table_args__ = (
        UniqueConstraint("upload_id", "sop_instance_uid"),
        Index("dicom_instance_study_instance_uid_idx", "study_instance_uid"),
    )

    upload_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("upload.id", ondelete="CASCADE"))
    file_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("upload_file.id", ondelete="CASCADE"))
    # The ZIP entry it came from (display data; never a path), or None for a plain file.
    entry_name: Mapped[str | None] = mapped_column(String(255))
    sop_class_uid: Mapped[str] = mapped_column(String(64))
    sop_instance_uid: Mapped[str] = mapped_column(String(64))
    study_instance_uid: Mapped[str] = mapped_column(String(64))
    series_instance_uid: Mapped[str] = mapped_column(String(64))
    transfer_syntax_uid: Mapped[str] = mapped_column(String(64))
    modality: Mapped[str | None] = mapped_column(String(16))
    series_number: Mapped[int | None] = mapped_column(Integer)
    instance_number: Mapped[int | None] = mapped_column(Integer)
    number_of_frames: Mapped[int | None] = mapped_column(Integer)
    size: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    store_key: Mapped[str] = mapped_column(String(300))
    forward_status: Mapped[ForwardStatus] = mapped_column(
        Enum(ForwardStatus, native_enum=False, length=16, validate_strings=True),
        default=ForwardStatus.pending,
    )
    forward_reason: Mapped[str | None] = mapped_column(String(500))
    forwarded_at: Mapped[datetime | None]
