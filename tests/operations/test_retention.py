"""Retention (PRD C-BIZ-01): the periodic job removes what has been kept long enough, only that."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from pydantic import ValidationError
from sqlalchemy import delete, select, update
from sqlalchemy.exc import DBAPIError

from relaypacs.audit.models import AuditEvent
from relaypacs.auth.models import LoginSession, RefreshToken
from relaypacs.config import AUDIT_MINIMUM_RETENTION_DAYS, Settings
from relaypacs.db.base import utcnow
from relaypacs.jobs.models import UNFINISHED_STATES, Job
from relaypacs.jobs.registry import default_registry, load_task_modules
from relaypacs.notifications.models import Notification
from relaypacs.operations.metrics import RETENTION_DELETED
from relaypacs.operations.repository import delete_audit_events_before
from relaypacs.operations.tasks import RETENTION_JOB, apply_retention
from relaypacs.uploads.models import Upload, UploadState
from relaypacs.uploads.store import upload_prefix
from tests.support import uploads
from tests.support.accounts import sign_in
from tests.support.dicom_studies import instance
from tests.support.jobs import job_context


def _stored_files(app: FastAPI, upload_id: str) -> list[Path]:
    root = Path(app.state.settings.data_dir) / "chunks" / upload_prefix(uuid.UUID(upload_id))
    return [path for path in root.rglob("*") if path.is_file()] if root.exists() else []


async def _validated_upload(
    client: httpx.AsyncClient, app: FastAPI, headers: dict[str, str]
) -> str:
    session = await uploads.start(client, headers, [instance(rows=32, columns=32)])
    await uploads.send_all(client, session)
    assert (await uploads.complete_and_wait(client, app, session))["state"] == "delivered"
    return session.id


async def _set_upload(app: FastAPI, upload_id: str, state: UploadState, days_ago: float) -> None:
    async with app.state.sessionmaker() as session:
        await session.execute(
            update(Upload)
            .where(Upload.id == uuid.UUID(upload_id))
            .values(state=state, updated_at=utcnow() - timedelta(days=days_ago))
        )
        await session.commit()


async def _run(app: FastAPI, settings: Settings | None = None) -> None:
    await apply_retention(job_context(app, RETENTION_JOB, settings), {})


def test_retention_runs_periodically_in_every_worker() -> None:
    load_task_modules()
    assert RETENTION_JOB in default_registry.periodic
    assert RETENTION_JOB in default_registry.handlers


async def test_delivered_study_files_go_after_the_retention_period_and_nothing_else(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    user = await sign_in(client, app)
    old_delivered = await _validated_upload(client, app, user.headers)
    old_partial = await _validated_upload(client, app, user.headers)
    recent_delivered = await _validated_upload(client, app, user.headers)
    old_failed = await _validated_upload(client, app, user.headers)
    await _set_upload(app, old_delivered, UploadState.delivered, days_ago=8)
    await _set_upload(app, old_partial, UploadState.partially_delivered, days_ago=30)
    await _set_upload(app, recent_delivered, UploadState.delivered, days_ago=6)
    await _set_upload(app, old_failed, UploadState.failed, days_ago=30)
    for upload_id in (old_delivered, old_partial, recent_delivered, old_failed):
        assert _stored_files(app, upload_id)
    before = RETENTION_DELETED.labels(record="delivered_study")._value.get()

    await _run(app)  # default: 7 days

    assert _stored_files(app, old_delivered) == []
    # Refused instances stay until someone acts (promise 4); failed uploads can be requeued.
    assert _stored_files(app, old_partial)
    assert _stored_files(app, old_failed)
    assert _stored_files(app, recent_delivered)
    assert RETENTION_DELETED.labels(record="delivered_study")._value.get() >= before + 1
    async with app.state.sessionmaker() as session:
        purged = await session.get(Upload, uuid.UUID(old_delivered))
        assert purged is not None
        assert purged.purged_at is not None
        # The record and its timeline stay: only the bytes go.
        assert purged.state is UploadState.delivered
    status = await client.get(f"/api/v1/uploads/{old_delivered}", headers=user.headers)
    assert status.status_code == 200
    assert status.json()["state"] == "delivered"


async def test_ended_sign_in_sessions_go_and_live_ones_stay(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    active = await sign_in(client, app)
    revoked = await sign_in(client, app)
    lapsed = await sign_in(client, app)
    now = utcnow()
    async with app.state.sessionmaker() as session:
        sessions = {
            user.id: (
                await session.scalars(
                    select(LoginSession.id).where(LoginSession.user_id == user.id)
                )
            ).one()
            for user in (active, revoked, lapsed)
        }
        await session.execute(
            update(LoginSession)
            .where(LoginSession.id == sessions[revoked.id])
            .values(revoked_at=now - timedelta(days=31))
        )
        await session.execute(
            update(RefreshToken)
            .where(RefreshToken.session_id == sessions[lapsed.id])
            .values(expires_at=now - timedelta(days=31))
        )
        await session.commit()

    await _run(app)

    async with app.state.sessionmaker() as session:
        ids = list(sessions.values())
        remaining = set(
            (await session.scalars(select(LoginSession.id).where(LoginSession.id.in_(ids)))).all()
        )
        tokens = set(
            (
                await session.scalars(
                    select(RefreshToken.session_id).where(RefreshToken.session_id.in_(ids))
                )
            ).all()
        )
    assert remaining == {sessions[active.id]}
    assert tokens == {sessions[active.id]}
    me = await client.get("/api/v1/auth/me", headers=active.headers)
    assert me.status_code == 200


async def _periodic_retention_done(app: FastAPI) -> None:
    """Wait until the app's own worker has run its start-up retention (default settings).

    That run deletes sessions ended more than 30 days ago, whoever they belong to: a test that
    stages such a session to see it kept must not race it.
    """
    deadline = asyncio.get_running_loop().time() + 30
    while True:
        async with app.state.sessionmaker() as session:
            states = set(
                (await session.scalars(select(Job.state).where(Job.kind == RETENTION_JOB))).all()
            )
        if states and not states & set(UNFINISHED_STATES):
            return
        assert asyncio.get_running_loop().time() < deadline, states
        await asyncio.sleep(0.05)


async def test_zero_days_keeps_sessions_forever(client: httpx.AsyncClient, app: FastAPI) -> None:
    await _periodic_retention_done(app)
    user = await sign_in(client, app)
    async with app.state.sessionmaker() as session:
        await session.execute(
            update(LoginSession)
            .where(LoginSession.user_id == user.id)
            .values(revoked_at=utcnow() - timedelta(days=900))
        )
        await session.commit()
    settings = app.state.settings.model_copy(update={"retention_expired_session_days": 0})
    await _run(app, settings)
    async with app.state.sessionmaker() as session:
        left = (
            await session.scalars(select(LoginSession.id).where(LoginSession.user_id == user.id))
        ).all()
    assert len(left) == 1


async def _audit_event(app: FastAPI, days_ago: float) -> uuid.UUID:
    event = AuditEvent(
        id=uuid.uuid4(), occurred_at=utcnow() - timedelta(days=days_ago), action="test.aged"
    )
    async with app.state.sessionmaker() as session:
        session.add(event)
        await session.commit()
    return event.id


async def _audit_event_exists(app: FastAPI, event_id: uuid.UUID) -> bool:
    async with app.state.sessionmaker() as session:
        return await session.get(AuditEvent, event_id) is not None


async def test_audit_records_are_kept_forever_by_default(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    ancient = await _audit_event(app, days_ago=9000)
    await _run(app)
    assert await _audit_event_exists(app, ancient)


async def test_audit_records_go_after_their_retention_and_never_before_six_years(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    older = await _audit_event(app, days_ago=AUDIT_MINIMUM_RETENTION_DAYS + 400)
    younger = await _audit_event(app, days_ago=AUDIT_MINIMUM_RETENTION_DAYS + 100)
    settings = app.state.settings.model_copy(
        update={"retention_audit_days": AUDIT_MINIMUM_RETENTION_DAYS + 200}
    )
    await _run(app, settings)
    assert not await _audit_event_exists(app, older)
    assert await _audit_event_exists(app, younger)


async def test_the_database_refuses_to_remove_or_change_a_recent_audit_record(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    recent = await _audit_event(app, days_ago=AUDIT_MINIMUM_RETENTION_DAYS - 30)
    for statement in (
        delete(AuditEvent).where(AuditEvent.id == recent),
        update(AuditEvent).where(AuditEvent.id == recent).values(action="test.forged"),
    ):
        async with app.state.sessionmaker() as session:
            with pytest.raises(DBAPIError, match="append-only"):
                await session.execute(statement)
    assert await _audit_event_exists(app, recent)


def test_an_audit_retention_under_six_years_is_refused() -> None:
    with pytest.raises(ValidationError, match="six years"):
        Settings(retention_audit_days=365)


async def test_an_application_clock_ahead_of_the_database_deletes_only_what_it_may(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    # Retention at the legal minimum, with this process's clock two hours ahead of the
    # database's: the cutoff reaches a record the database still protects. The delete must
    # still remove what is past the minimum, not fail on the protected record.
    past = await _audit_event(app, days_ago=AUDIT_MINIMUM_RETENTION_DAYS + 1)
    protected = await _audit_event(app, days_ago=AUDIT_MINIMUM_RETENTION_DAYS - 1 / 24)
    ahead = utcnow() + timedelta(hours=2)
    async with app.state.sessionmaker() as session:
        cutoff = ahead - timedelta(days=AUDIT_MINIMUM_RETENTION_DAYS)
        assert await delete_audit_events_before(session, cutoff) >= 1
        await session.commit()
    assert not await _audit_event_exists(app, past)
    assert await _audit_event_exists(app, protected)


async def test_old_notifications_go_recent_ones_stay(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    user = await sign_in(client, app)
    now = utcnow()

    def notification(days_ago: int, title: str) -> Notification:
        return Notification(
            id=uuid.uuid4(),
            user_id=user.id,
            type="upload_complete",
            title=title,
            body="",
            data={},
            created_at=now - timedelta(days=days_ago),
        )

    old, recent = notification(200, "old"), notification(10, "recent")
    async with app.state.sessionmaker() as session:
        session.add_all([old, recent])
        await session.commit()
    await _run(app)  # default: 180 days
    async with app.state.sessionmaker() as session:
        assert await session.get(Notification, old.id) is None
        assert await session.get(Notification, recent.id) is not None
    listed = await client.get("/api/v1/notifications", headers=user.headers)
    assert listed.status_code == 200
    assert "recent" in listed.text
    assert '"old"' not in listed.text


async def test_audit_retention_at_exactly_the_legal_minimum_works_with_the_database_guard(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    # The setting's floor and the trigger's must agree: at the floor, the job's cutoff is one
    # the database accepts, so the run succeeds instead of failing on every record.
    past = await _audit_event(app, days_ago=AUDIT_MINIMUM_RETENTION_DAYS + 1)
    within = await _audit_event(app, days_ago=AUDIT_MINIMUM_RETENTION_DAYS - 1)
    settings = app.state.settings.model_copy(
        update={"retention_audit_days": AUDIT_MINIMUM_RETENTION_DAYS}
    )
    before = RETENTION_DELETED.labels(record="audit_event")._value.get()
    await _run(app, settings)
    assert not await _audit_event_exists(app, past)
    assert await _audit_event_exists(app, within)
    assert RETENTION_DELETED.labels(record="audit_event")._value.get() >= before + 1
