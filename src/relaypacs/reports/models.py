"""The report of a delivered study: its reading status, the radiologist, the text, and where in
the PACS the report was found (a Structured Report or an Encapsulated PDF)."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum

from sqlalchemy import Enum, ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from relaypacs.db.base import Base, IdMixin, TimestampMixin, utcnow


class ReportStatus(StrEnum):
    #: Created when the study was delivered; waits for a radiologist.
    assigned = "assigned"
    #: A radiologist is reading it.
    pending = "pending"
    #: The radiologist needs more from the sender (the message says what).
    additional_data_required = "additional_data_required"
    ready = "ready"


class ReportSource(StrEnum):
    """Where a ``ready`` report came from."""

    manual = "manual"  # PATCH /reports/{id}
    structured_report = "structured_report"  # an SR instance in the PACS
    encapsulated_pdf = "encapsulated_pdf"  # an Encapsulated PDF instance in the PACS


def _enum(kind: type[StrEnum], length: int) -> Enum:
    return Enum(kind, native_enum=False, length=length, validate_strings=True)


class Report(IdMixin, TimestampMixin, Base):
    __tablename__ = "report"
    __table_args__ = (
        Index("report_owner_id_created_at_idx", "owner_id", "created_at"),
        Index("report_status_created_at_idx", "status", "created_at"),
        # The PACS sync's query: unfinished reports that are due.
        Index("report_next_sync_at_idx", "next_sync_at"),
    )

    upload_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("upload.id", ondelete="CASCADE"), unique=True
    )
    owner_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("user_account.id", ondelete="CASCADE"))
    status: Mapped[ReportStatus] = mapped_column(
        _enum(ReportStatus, 32), default=ReportStatus.assigned
    )
    study_instance_uid: Mapped[str | None] = mapped_column(String(64))
    #: When the PACS confirmed the study (the report's clock starts here).
    delivered_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    ready_at: Mapped[datetime | None]

    radiologist_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("user_account.id", ondelete="SET NULL")
    )
    radiologist_name: Mapped[str | None] = mapped_column(String(200))
    text: Mapped[str | None] = mapped_column(Text)
    #: What the radiologist asks for when the status is additional_data_required.
    message: Mapped[str | None] = mapped_column(String(2000))
    source: Mapped[ReportSource | None] = mapped_column(_enum(ReportSource, 32))

    # The PACS object the report was read from (SR or Encapsulated PDF), when there is one.
    pacs_destination: Mapped[str | None] = mapped_column(String(100))
    pacs_series_instance_uid: Mapped[str | None] = mapped_column(String(64))
    pacs_sop_instance_uid: Mapped[str | None] = mapped_column(String(64))
    pacs_sop_class_uid: Mapped[str | None] = mapped_column(String(64))
    # The PACS's own PDF, served as is by GET /reports/{id}/pdf.
    pdf_series_instance_uid: Mapped[str | None] = mapped_column(String(64))
    pdf_sop_instance_uid: Mapped[str | None] = mapped_column(String(64))

    last_synced_at: Mapped[datetime | None]
    #: None once ready (or given up): the sync job ignores the report.
    next_sync_at: Mapped[datetime | None]
    #: Why the last sync did not reach the PACS (no patient data: status codes and types).
    sync_error: Mapped[str | None] = mapped_column(String(300))
