"""Analytics tests run on a database of their own (per backend), filled with known uploads."""

from __future__ import annotations

import secrets
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

import pytest
from fastapi import FastAPI

from relaypacs.config import Settings
from relaypacs.db.base import utcnow
from relaypacs.reports.models import Report, ReportStatus
from relaypacs.uploads.models import Upload, UploadEvent, UploadState
from relaypacs.users.models import ServiceLevel
from tests.conftest import make_settings
from tests.support.accounts import running_app
from tests.support.databases import throwaway_database


@dataclass
class Row:
    """What the test inserted, to compute the expected figures from."""

    upload_id: uuid.UUID
    owner_id: uuid.UUID
    username: str
    created_at: datetime
    modality: str
    service_level: ServiceLevel
    state: UploadState
    total_bytes: int
    file_count: int
    seconds_to_pacs: float | None
    seconds_to_report: float | None


@dataclass
class Dataset:
    rows: list[Row] = field(default_factory=list)

    def of(self, owner_id: uuid.UUID | None = None, *, days: int | None = None) -> list[Row]:
        today = utcnow().date()
        return [
            r
            for r in self.rows
            if (owner_id is None or r.owner_id == owner_id)
            and (days is None or r.created_at.date() >= today - timedelta(days=days - 1))
        ]


@pytest.fixture(scope="module")
def analytics_settings(
    settings: Settings, tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[Settings]:
    """A module may set ``SETTINGS`` (a dict) for settings of its own."""
    backend = "sqlite" if settings.is_sqlite else "postgresql"
    directory = tmp_path_factory.mktemp(f"analytics-{backend}")
    overrides = getattr(request.module, "SETTINGS", {})
    with throwaway_database(backend, directory) as url:
        yield make_settings(url, directory, **{"run_worker_in_process": False, **overrides})


@pytest.fixture(scope="module")
async def analytics_app(analytics_settings: Settings) -> AsyncIterator[FastAPI]:
    async with running_app(analytics_settings) as app:
        yield app


async def insert_upload(
    app: FastAPI,
    dataset: Dataset,
    *,
    owner: tuple[uuid.UUID, str],
    created_at: datetime,
    modality: str = "CT",
    service_level: ServiceLevel = ServiceLevel.routine,
    state: UploadState = UploadState.delivered,
    total_bytes: int = 10_000_000,
    file_count: int = 3,
    seconds_to_pacs: float | None = None,
    seconds_to_report: float | None = None,
) -> Row:
    """An upload with its timeline (and report), as the product would have left it."""
    upload_id = uuid.uuid4()
    async with app.state.sessionmaker() as session:
        session.add(
            Upload(
                id=upload_id,
                owner_id=owner[0],
                state=state,
                token_hash=secrets.token_hex(32),
                created_at=created_at,
                updated_at=created_at,
                expires_at=created_at + timedelta(hours=24),
                patient_name="TEST^ANALYTICS",
                study_date=date(2024, 1, 1),
                modality=modality,
                service_level=service_level,
                duplicate_key=secrets.token_hex(32),
                chunk_size=1024 * 1024,
                total_bytes=total_bytes,
                file_count=file_count,
                warnings=[],
            )
        )
        await session.flush()
        session.add(UploadEvent(upload_id=upload_id, state=UploadState.created, at=created_at))
        if seconds_to_pacs is not None:
            delivered_at = created_at + timedelta(seconds=seconds_to_pacs)
            session.add(UploadEvent(upload_id=upload_id, state=state, at=delivered_at))
            # A later repeat of the state must not count: the first delivery is the time.
            session.add(
                UploadEvent(upload_id=upload_id, state=state, at=delivered_at + timedelta(hours=1))
            )
            if seconds_to_report is not None:
                session.add(
                    Report(
                        upload_id=upload_id,
                        owner_id=owner[0],
                        status=ReportStatus.ready,
                        delivered_at=delivered_at,
                        ready_at=created_at + timedelta(seconds=seconds_to_report),
                    )
                )
        elif state not in (UploadState.created, UploadState.receiving):
            session.add(UploadEvent(upload_id=upload_id, state=state, at=created_at))
        await session.commit()
    row = Row(
        upload_id,
        owner[0],
        owner[1],
        created_at,
        modality,
        service_level,
        state,
        total_bytes,
        file_count,
        seconds_to_pacs,
        seconds_to_report,
    )
    dataset.rows.append(row)
    return row
