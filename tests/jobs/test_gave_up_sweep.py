"""The sweeps that fail an upload whose job gave up look at every waiting upload, however many
wait (a long PACS outage queues thousands, each with a live job)."""

from __future__ import annotations

import uuid

import httpx
from fastapi import FastAPI

from relaypacs.jobs.models import Job, JobState
from relaypacs.uploads.models import UploadState
from relaypacs.uploads.repository import uploads_their_job_gave_up_on
from tests.support import uploads
from tests.support.accounts import sign_in
from tests.support.dicom_studies import instance

#: No handler, and no sweep looks at it: only this test's rows are judged.
KIND = "test.gave_up_sweep"


def _key(upload_id: uuid.UUID) -> str:
    return f"{KIND}:{upload_id}"


async def test_an_upload_whose_job_died_is_found_behind_pages_of_live_ones(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    owner = await sign_in(client, app)
    started = [
        uuid.UUID((await uploads.start(client, owner.headers, [instance()])).id) for _ in range(5)
    ]
    dead = max(started)  # last in id order: on the last page
    async with app.state.sessionmaker() as session:
        for upload_id in started:
            session.add(
                Job(
                    kind=KIND,
                    payload={"upload_id": str(upload_id)},
                    state=JobState.dead if upload_id == dead else JobState.succeeded,
                    attempts=1,
                    dedupe_key=_key(upload_id),
                    last_error="worker died" if upload_id == dead else None,
                )
            )
        await session.commit()
    async with app.state.sessionmaker() as session:
        found = await uploads_their_job_gave_up_on(
            session, states={UploadState.created}, job_key=_key, page=2
        )
    assert found == [(dead, "worker died")]
