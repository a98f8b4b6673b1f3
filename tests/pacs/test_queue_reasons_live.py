"""A study that waits for the PACS shows why, and its watchers hear of each new reason, though an
outage of a day of retries keeps one timeline row (brought up to date, not added to)."""

from __future__ import annotations

import uuid

import httpx
from fastapi import FastAPI
from sqlalchemy import func, select, update

from relaypacs.notifications.models import StreamEvent
from relaypacs.pacs.forwarding import wait_in_queue
from relaypacs.uploads import repository as uploads_repository
from relaypacs.uploads.models import Upload, UploadEvent, UploadState
from tests.support import uploads
from tests.support.accounts import sign_in
from tests.support.dicom_studies import instance


async def _live_states(app: FastAPI, user_id: uuid.UUID) -> int:
    async with app.state.sessionmaker() as session:
        statement = select(func.count()).where(
            StreamEvent.user_id == user_id, StreamEvent.event == "upload_state"
        )
        return int((await session.execute(statement)).scalar_one())


async def test_each_new_reason_to_wait_reaches_the_owners_streams(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    owner = await sign_in(client, app)
    upload_id = uuid.UUID((await uploads.start(client, owner.headers, [instance()])).id)
    async with app.state.sessionmaker() as session:
        # Queued for the PACS, as the forwarding stage leaves a study it could not send yet.
        await session.execute(
            update(Upload).where(Upload.id == upload_id).values(state=UploadState.queued)
        )
        await uploads_repository.add_event(session, upload_id, UploadState.queued)
        await session.commit()
    sessionmaker = app.state.sessionmaker
    await wait_in_queue(sessionmaker, upload_id, "PACS unreachable; next attempt in 30 s")
    before = await _live_states(app, owner.id)
    await wait_in_queue(sessionmaker, upload_id, "PACS unreachable; next attempt in 60 s")
    assert await _live_states(app, owner.id) == before + 1
    async with app.state.sessionmaker() as session:
        details = (
            await session.scalars(
                select(UploadEvent.detail).where(
                    UploadEvent.upload_id == upload_id, UploadEvent.state == UploadState.queued
                )
            )
        ).all()
    assert details.count("PACS unreachable; next attempt in 60 s") == 1
    assert len(details) == 2  # the queuing, and one row of why, kept up to date
