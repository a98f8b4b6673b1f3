"""The analytics fact table, and the index the admin's upload list needs on ``upload``.

``upload_stat`` holds one narrow row per upload with what the figures need: who, when (and the
UTC day), modality, service level, current state, size, and the seconds from upload start to
delivery and to the report. It is derived data, kept in step by :mod:`relaypacs.analytics.facts`
in the transaction of every timeline change, so summary and trends read one small table through
one index instead of joining uploads, their timelines and reports (measured: bench/README.md).
"""

from __future__ import annotations

import uuid
from datetime import date, datetime

from sqlalchemy import BigInteger, Date, Float, ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from relaypacs.db.base import Base
from relaypacs.uploads.models import Upload

#: The admin's list of uploads, newest first.
UPLOAD_CREATED_AT_IDX = Index("upload_created_at_idx", Upload.created_at)

_COVERED = ["owner_id", "modality", "service_level", "state", "total_bytes", "seconds_to_pacs"]


class UploadStat(Base):
    __tablename__ = "upload_stat"
    __table_args__ = (
        # Every analytics query filters on the period; PostgreSQL answers from the index alone.
        Index("upload_stat_created_at_idx", "created_at", postgresql_include=_COVERED),
        Index("upload_stat_owner_id_created_at_idx", "owner_id", "created_at"),
        # The days the roll-up has not sealed (today, yesterday, a day changed since).
        Index("upload_stat_day_idx", "day"),
    )

    upload_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("upload.id", ondelete="CASCADE"), primary_key=True
    )
    owner_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("user_account.id", ondelete="CASCADE"))
    created_at: Mapped[datetime]
    #: The UTC day of ``created_at`` (the trends' x axis).
    day: Mapped[date] = mapped_column(Date)
    modality: Mapped[str] = mapped_column(String(16))
    service_level: Mapped[str] = mapped_column(String(20))
    state: Mapped[str] = mapped_column(String(32))
    total_bytes: Mapped[int] = mapped_column(BigInteger)
    file_count: Mapped[int] = mapped_column(Integer)
    #: Upload start to the first delivered (or partially delivered) timeline entry.
    seconds_to_pacs: Mapped[float | None] = mapped_column(Float)
    #: Upload start to the report's ready time.
    seconds_to_report: Mapped[float | None] = mapped_column(Float)


class UploadStatDay(Base):
    """A sealed day of ``upload_stat`` summed by modality and service level (no owner).

    Trends over long periods for everyone read these few rows instead of every upload of the
    period (:mod:`relaypacs.analytics.rollup`). Only the days listed in :class:`RolledDay` count;
    a change to an upload of such a day unseals it in the same transaction (``facts``).
    """

    __tablename__ = "upload_stat_day"

    day: Mapped[date] = mapped_column(Date, primary_key=True)
    modality: Mapped[str] = mapped_column(String(16), primary_key=True)
    service_level: Mapped[str] = mapped_column(String(20), primary_key=True)
    uploads: Mapped[int] = mapped_column(Integer)
    total_bytes: Mapped[int] = mapped_column(BigInteger)
    #: Of ``uploads``: delivered (fully or partly), and failed or rejected.
    delivered: Mapped[int] = mapped_column(Integer)
    failed: Mapped[int] = mapped_column(Integer)


class RolledDay(Base):
    """A day whose ``upload_stat_day`` rows are complete and current."""

    __tablename__ = "upload_stat_rolled_day"

    day: Mapped[date] = mapped_column(Date, primary_key=True)
    rolled_at: Mapped[datetime]
