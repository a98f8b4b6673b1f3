"""Analytics figures and the admin view of uploads."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from enum import StrEnum

from pydantic import BaseModel, Field

from relaypacs.uploads.models import UploadState
from relaypacs.users.models import ServiceLevel


class Period(StrEnum):
    one_week = "1w"
    two_weeks = "2w"
    one_month = "1m"
    three_months = "3m"
    six_months = "6m"
    all = "all"


#: Days in each period (a month is 30 days); ``all`` has no lower bound.
PERIOD_DAYS = {
    Period.one_week: 7,
    Period.two_weeks: 14,
    Period.one_month: 30,
    Period.three_months: 91,
    Period.six_months: 182,
}


class Scope(BaseModel):
    period: Period
    since: datetime | None = Field(description="Uploads started from this time (None: all)")
    until: datetime
    user_id: uuid.UUID | None = Field(description="Whose uploads (None: everyone's, admins)")
    modality: str | None
    service_level: ServiceLevel | None


class Durations(BaseModel):
    """Seconds; percentiles interpolate linearly between ranks (PostgreSQL percentile_cont)."""

    count: int
    median_seconds: float | None
    p95_seconds: float | None


class Volume(BaseModel):
    count: int
    bytes: int
    gigabytes: float


class ModalityShare(BaseModel):
    modality: str
    count: int
    bytes: int


class ServiceLevelShare(BaseModel):
    service_level: ServiceLevel
    count: int
    delivered: int
    time_to_pacs: Durations


class StatTurnaround(BaseModel):
    count: int = Field(description="STAT uploads in the period")
    delivered: int
    time_to_pacs: Durations = Field(description="Upload start to delivery")
    reports_ready: int
    time_to_report: Durations = Field(description="Upload start to report ready")


class Summary(BaseModel):
    scope: Scope
    uploads: Volume
    outcomes: dict[str, int] = Field(description="Uploads by current state")
    finished: int = Field(
        description="delivered + partially_delivered + failed + rejected + expired"
    )
    success_rate: float | None = Field(description="delivered ÷ finished; None when none finished")
    modalities: list[ModalityShare]
    service_levels: list[ServiceLevelShare]
    time_to_pacs: Durations = Field(description="Upload start to delivery, delivered uploads")
    stat_turnaround: StatTurnaround


class TrendDay(BaseModel):
    date: date
    uploads: int
    bytes: int
    delivered: int = Field(description="delivered + partially_delivered")
    failed: int = Field(description="failed + rejected")
    modalities: dict[str, int]


class Trends(BaseModel):
    scope: Scope
    days: list[TrendDay]


class AdminUploadSummary(BaseModel):
    upload_id: uuid.UUID
    owner_id: uuid.UUID
    owner_username: str
    state: UploadState
    study_date: date
    modality: str
    service_level: ServiceLevel
    study_description: str | None
    file_count: int
    instance_count: int
    bytes_total: int
    failure_reason: str | None
    created_at: datetime
    updated_at: datetime


class AdminUploadPage(BaseModel):
    items: list[AdminUploadSummary]
    total: int
    limit: int
    offset: int


class Requeued(BaseModel):
    upload_id: uuid.UUID
    state: UploadState
    job_id: uuid.UUID
