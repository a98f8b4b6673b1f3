"""Long trends read sealed days from the daily roll-up: always the same figures as from the
uploads themselves, including right after an upload of a sealed day changes."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from typing import Any

import pytest
from fastapi import FastAPI
from sqlalchemy import func, select, update

from relaypacs.analytics import repository
from relaypacs.analytics.models import RolledDay, UploadStatDay
from relaypacs.analytics.tasks import seal_due_days
from relaypacs.config import Settings
from relaypacs.db.base import utcnow
from relaypacs.uploads.models import Upload, UploadEvent, UploadState
from relaypacs.users.models import Role, ServiceLevel
from tests.analytics.conftest import Dataset, Row, insert_upload
from tests.analytics.test_analytics import check_days
from tests.support.accounts import SignedIn, new_client, sign_in

API = "/api/v1"


# Every request computes its figures (no cache), and the limit does not get in the way.
SETTINGS = {"analytics_cache_seconds": 0, "analytics_rate_limit": "1000/minute"}


def _at(days_ago: int, hour: int) -> datetime:
    now = utcnow()
    return datetime(now.year, now.month, now.day, hour, tzinfo=now.tzinfo) - timedelta(
        days=days_ago
    )


async def _fill(app: FastAPI, owners: list[SignedIn]) -> Dataset:
    data = Dataset()
    states = [UploadState.delivered, UploadState.failed, UploadState.rejected, UploadState.expired]
    for n in range(60):
        owner = owners[n % len(owners)]
        await insert_upload(
            app,
            data,
            owner=(owner.id, owner.username),
            created_at=_at(n % 20, hour=1 + n % 22),
            modality=("CT", "MR", "US")[n % 3],
            service_level=(ServiceLevel.routine, ServiceLevel.stat)[n % 2],
            state=states[n % len(states)],
            total_bytes=1_000 * (n + 1),
        )
    return data


async def _trends(app: FastAPI, admin: SignedIn, **params: str) -> list[dict[str, Any]]:
    async with new_client(app) as http:
        response = await http.get(
            f"{API}/analytics/trends", params={"period": "all", **params}, headers=admin.headers
        )
    assert response.status_code == 200, response.text
    days: list[dict[str, Any]] = response.json()["days"]
    return days


async def _sealed_days(app: FastAPI) -> int:
    async with app.state.sessionmaker() as session:
        return int(await session.scalar(select(func.count()).select_from(RolledDay)) or 0)


async def test_sealed_days_give_the_same_trends_and_follow_a_change(
    analytics_app: FastAPI,
) -> None:
    app = analytics_app
    async with new_client(app) as http:
        admin = await sign_in(http, app, role=Role.admin)
        owners = [await sign_in(http, app) for _ in range(3)]
    data = await _fill(app, owners)
    live = await _trends(app, admin)
    check_days(live, data.rows)

    # Days two or more days old are sealed; today and yesterday are not.
    assert await seal_due_days(app.state.sessionmaker, limit=1000) == 18
    assert await _sealed_days(app) == 18
    assert await seal_due_days(app.state.sessionmaker, limit=1000) == 0
    assert await _trends(app, admin) == live
    for params in ({"modality": "MR"}, {"service_level": "stat"}):
        key, value = next(iter(params.items()))
        wanted = [
            r for r in data.rows if getattr(r, key) in (value, getattr(ServiceLevel, value, None))
        ]
        check_days(await _trends(app, admin, **params), wanted)
    owner_rows = data.of(owners[0].id)
    async with new_client(app) as http:
        response = await http.get(
            f"{API}/analytics/trends", params={"period": "all"}, headers=owners[0].headers
        )
    check_days(response.json()["days"], owner_rows)

    # An upload of a sealed day is requeued and delivered: the figures follow at once.
    changed = next(r for r in data.rows if r.state is UploadState.failed and _age(r) >= 5)
    await _deliver(app, changed)
    after = await _trends(app, admin)
    check_days(after, data.rows)
    assert after != live
    # ... and the day is sealed again by the next run, with the new figures.
    assert await seal_due_days(app.state.sessionmaker, limit=1000) == 1
    assert await _trends(app, admin) == after


def _age(row: Row) -> int:
    return (utcnow().date() - row.created_at.date()).days


async def _deliver(app: FastAPI, row: Row) -> None:
    async with app.state.sessionmaker() as session:
        await session.execute(
            update(Upload).where(Upload.id == row.upload_id).values(state=UploadState.delivered)
        )
        session.add(UploadEvent(upload_id=row.upload_id, state=UploadState.delivered, at=utcnow()))
        await session.commit()
    row.state = UploadState.delivered


async def test_a_change_in_flight_while_a_day_is_sealed_is_never_lost(
    analytics_app: FastAPI, settings: Settings
) -> None:
    if settings.is_sqlite:
        pytest.skip("SQLite has one writer at a time: the two cannot overlap there")
    app = analytics_app
    async with new_client(app) as http:
        owner = await sign_in(http, app)
    data = Dataset()
    day = _at(30, hour=9)
    row = await insert_upload(
        app, data, owner=(owner.id, owner.username), created_at=day, state=UploadState.failed
    )
    async with app.state.sessionmaker() as changing:
        # The upload changes and its fact row is rewritten, not yet committed.
        await changing.execute(
            update(Upload).where(Upload.id == row.upload_id).values(state=UploadState.delivered)
        )
        await repository.refresh_stats(changing, [row.upload_id])
        sealing = asyncio.create_task(_seal(app, day))
        await asyncio.sleep(0.5)
        assert not sealing.done()  # it waits for the change ...
        await changing.commit()
    await asyncio.wait_for(sealing, 10)
    # ... and sums what was committed: the day is sealed with the upload delivered.
    async with app.state.sessionmaker() as session:
        sums = (
            await session.execute(
                select(UploadStatDay.uploads, UploadStatDay.delivered, UploadStatDay.failed).where(
                    UploadStatDay.day == day.date()
                )
            )
        ).all()
    assert [tuple(s) for s in sums] == [(1, 1, 0)]


async def _seal(app: FastAPI, day: datetime) -> None:
    async with app.state.sessionmaker() as session:
        await repository.seal_day(session, day.date(), utcnow())
        await session.commit()
