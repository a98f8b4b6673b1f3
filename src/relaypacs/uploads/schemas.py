"""Request and response bodies of the upload protocol."""

from __future__ import annotations

import unicodedata
import uuid
from datetime import UTC, date, datetime, timedelta
from pathlib import PurePosixPath
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, field_validator

from relaypacs.uploads.models import FileStatus, UploadState
from relaypacs.users.models import MAX_CHUNK_SIZE, MIN_CHUNK_SIZE, ServiceLevel

#: Modality defined terms (PS3.3 §C.7.3.1.1.1), current and commonly still sent retired ones.
_MODALITY_CODES = """
    AR ASMT AU BDUS BI BMD CR CT CTPROTOCOL DG DOC DX ECG EPS ES FID GM HC HD IO IOL IVOCT IVUS
    KER KO LEN LS MG MR M3D NM OAM OCT OP OPM OPT OPTBSV OPTENF OPV OSS OT PLAN POS PR PT PX REG
    RESP RF RG RTDOSE RTIMAGE RTINTENT RTPLAN RTRAD RTRECORD RTSEGANN RTSTRUCT RWV SEG SM SMR SR
    SRF STAIN TEXTUREMAP TG US VA XA XC CD DD DS DM EC FA LP MA MS OPR ST VF"""
MODALITIES = frozenset(_MODALITY_CODES.split())
MAX_FILES = 10_000
#: The earliest time zone is UTC+14: a date that is "today" there is not in the future.
_LATEST_OFFSET = timedelta(hours=14)


def _no_control_characters(value: str) -> str:
    if any(unicodedata.category(c) == "Cc" for c in value):
        raise ValueError("must not contain control characters")
    return value


class StudyIn(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    patient_name: Annotated[str, Field(min_length=1, max_length=200)]
    patient_id: Annotated[str | None, Field(max_length=64)] = None
    study_date: date
    modality: Annotated[str, Field(min_length=1, max_length=16)]
    service_level: ServiceLevel | None = Field(
        default=None, description="Default: the user's preference"
    )
    study_description: Annotated[str | None, Field(max_length=200)] = None
    clinical_history: Annotated[str | None, Field(max_length=4000)] = None

    @field_validator("patient_name", "patient_id", "study_description")
    @classmethod
    def _printable(cls, value: str | None) -> str | None:
        return None if value is None else _no_control_characters(value)

    @field_validator("study_date")
    @classmethod
    def _real_past_date(cls, value: date) -> date:
        if value > (datetime.now(UTC) + _LATEST_OFFSET).date():
            raise ValueError("study date is in the future")
        if value.year < 1900:
            raise ValueError("study date is before 1900")
        return value

    @field_validator("modality")
    @classmethod
    def _known_modality(cls, value: str) -> str:
        code = value.upper()
        if code not in MODALITIES:
            raise ValueError("not a DICOM modality code (e.g. CT, MR, CR, DX, US, MG, NM, PT)")
        return code


class FileIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Annotated[str, Field(min_length=1, max_length=255)] = Field(
        description="Display name only (may hold a relative folder path); never used as a path"
    )
    size: Annotated[StrictInt, Field(gt=0)]

    @field_validator("name")
    @classmethod
    def _safe_display_name(cls, value: str) -> str:
        _no_control_characters(value)
        normalised = value.replace("\\", "/")
        if normalised.startswith("/") or (len(value) > 1 and value[1] == ":"):
            raise ValueError("must be a relative name, not an absolute path")
        if ".." in PurePosixPath(normalised).parts:
            raise ValueError("must not contain '..'")
        return value


class UploadCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    study: StudyIn
    files: Annotated[list[FileIn], Field(min_length=1, max_length=MAX_FILES)]
    chunk_size: Annotated[StrictInt | None, Field(ge=MIN_CHUNK_SIZE, le=MAX_CHUNK_SIZE)] = Field(
        default=None, description="Bytes per chunk; default: the user's preference (1 MiB)"
    )
    force_upload: StrictBool = Field(
        default=False, description="Upload even when the same study was uploaded recently"
    )


class FileCreated(BaseModel):
    file_id: uuid.UUID
    name: str
    size: int
    chunk_count: int


class UploadCreated(BaseModel):
    upload_id: uuid.UUID
    upload_token: str = Field(description="Send as X-Upload-Token; valid for this upload only")
    chunk_size: int
    expires_at: datetime
    state: UploadState
    files: list[FileCreated]


class UploadTokenIssued(BaseModel):
    upload_id: uuid.UUID
    upload_token: str = Field(
        description="Send as X-Upload-Token; replaces the upload's previous token"
    )
    expires_at: datetime = Field(description="The upload session's expiry, unchanged")


class ChunkStored(BaseModel):
    upload_id: uuid.UUID
    file_id: uuid.UUID
    index: int
    size: int
    md5: str = Field(description="Base64 MD5 of the stored bytes")


class StudyOut(BaseModel):
    patient_name: str
    patient_id: str | None
    study_date: date
    modality: str
    service_level: ServiceLevel
    study_description: str | None
    clinical_history: str | None


class FileProblem(BaseModel):
    entry: str | None = Field(description="ZIP entry name, or null for the file itself")
    status: str
    reason: str


class FileOut(BaseModel):
    file_id: uuid.UUID
    name: str
    size: int
    chunk_count: int
    chunks_received: int
    missing_chunks: list[tuple[int, int]] = Field(
        description="Missing chunk indexes as inclusive [first, last] ranges"
    )
    status: FileStatus
    sha256: str | None
    problems: list[FileProblem]


class InstanceOut(BaseModel):
    instance_id: uuid.UUID
    file_id: uuid.UUID
    entry_name: str | None
    sop_class_uid: str
    sop_instance_uid: str
    study_instance_uid: str
    series_instance_uid: str
    transfer_syntax_uid: str
    modality: str | None
    size: int
    sha256: str
    forward_status: str
    forward_reason: str | None


class TimelineEvent(BaseModel):
    state: UploadState
    at: datetime
    detail: str | None


class UploadStatus(BaseModel):
    upload_id: uuid.UUID
    state: UploadState
    study: StudyOut
    chunk_size: int
    bytes_received: int
    bytes_total: int
    created_at: datetime
    expires_at: datetime
    completed_at: datetime | None
    forced: bool
    instance_count: int
    warnings: list[dict[str, Any]]
    failure_reason: str | None
    files: list[FileOut]
    instances: list[InstanceOut]
    timeline: list[TimelineEvent]


class UploadSummary(BaseModel):
    upload_id: uuid.UUID
    state: UploadState
    patient_name: str
    study_date: date
    modality: str
    service_level: ServiceLevel
    study_description: str | None
    file_count: int
    instance_count: int
    bytes_total: int
    bytes_received: int
    created_at: datetime
    expires_at: datetime


class UploadPage(BaseModel):
    items: list[UploadSummary]
    total: int
    limit: int
    offset: int


class CompletionAccepted(BaseModel):
    upload_id: uuid.UUID
    state: UploadState
