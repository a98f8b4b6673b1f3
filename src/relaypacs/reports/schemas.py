"""Report bodies."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from relaypacs.reports.models import ReportSource, ReportStatus
from relaypacs.users.models import ServiceLevel

_NO_NUL = r"^[^\x00]*$"
ReportText = Annotated[str, StringConstraints(min_length=1, max_length=100_000, pattern=_NO_NUL)]
Line = Annotated[
    str, StringConstraints(min_length=1, max_length=200, pattern=r"^[^\x00-\x1f\x7f]*$")
]
Message = Annotated[str, StringConstraints(min_length=1, max_length=2000, pattern=_NO_NUL)]


class StudyOut(BaseModel):
    patient_name: str
    patient_id: str | None
    study_date: date
    modality: str
    service_level: ServiceLevel
    study_description: str | None
    study_instance_uid: str | None


class ReportSummary(BaseModel):
    id: uuid.UUID
    upload_id: uuid.UUID
    owner_id: uuid.UUID
    status: ReportStatus
    study: StudyOut
    uploaded_at: datetime
    delivered_at: datetime
    radiologist: str | None
    updated_at: datetime
    ready_at: datetime | None


class ReportOut(ReportSummary):
    text: str | None
    message: str | None
    source: ReportSource | None
    has_pacs_pdf: bool
    last_synced_at: datetime | None
    sync_error: str | None


class ReportPage(BaseModel):
    items: list[ReportSummary]
    total: int
    limit: int
    offset: int


class ReportUpdate(BaseModel):
    """What a radiologist (or admin) changes. ``message`` goes with
    ``additional_data_required``; ``text`` is required for ``ready`` unless already there."""

    model_config = ConfigDict(extra="forbid")

    status: Literal["pending", "additional_data_required", "ready"] | None = None
    radiologist: Line | None = Field(default=None, description="Name shown on the report")
    text: ReportText | None = None
    message: Message | None = None
