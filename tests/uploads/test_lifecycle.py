"""Status, listing, completion, cancel and expiry of upload sessions."""

from __future__ import annotations

import asyncio
import uuid
from datetime import datetime, timedelta
from typing import Any

import httpx
from fastapi import FastAPI
from sqlalchemy import update

from relaypacs.db.base import utcnow
from relaypacs.jobs.service import enqueue
from relaypacs.uploads.models import Upload
from relaypacs.uploads.store import chunk_key
from relaypacs.users.models import Role
from tests.support import uploads
from tests.support.accounts import assert_problem, sign_in
from tests.support.dicom_studies import instance

API = "/api/v1/uploads"


async def _age(app: FastAPI, upload_id: str) -> None:
    async with app.state.sessionmaker() as db:
        await db.execute(
            update(Upload)
            .where(Upload.id == uuid.UUID(upload_id))
            .values(expires_at=utcnow() - timedelta(minutes=1))
        )
        await db.commit()


async def _run_expiry(app: FastAPI) -> None:
    """Run the expiry sweep once and wait for that very run: waiting for any sweep (the periodic
    one, say) could leave this one to run during the next test, expiring what it aged."""
    worker = app.state.job_worker
    done = asyncio.Event()
    loop = asyncio.get_running_loop()
    ours: set[uuid.UUID] = set()

    def listener(job: Any, outcome: str) -> None:
        if job.id in ours and outcome in {"succeeded", "failed", "dead"}:
            loop.call_soon_threadsafe(done.set)

    worker.listeners.append(listener)
    try:
        async with app.state.sessionmaker() as db:
            job = await enqueue(db, "uploads.expire", {}, dedupe_key=f"test-{uuid.uuid4()}")
            ours.add(job.id)  # before the commit: no worker can claim it sooner
            await db.commit()
        await asyncio.wait_for(done.wait(), 30)
    finally:
        worker.listeners.remove(listener)


async def _notifications(
    client: httpx.AsyncClient, headers: dict[str, str]
) -> list[dict[str, Any]]:
    response = await client.get("/api/v1/notifications?limit=100", headers=headers)
    assert response.status_code == 200
    items: list[dict[str, Any]] = response.json()["items"]
    return items


async def test_status_lists_missing_chunks_as_ranges(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    user = await sign_in(client, app)
    data = bytes(uploads.SMALL_CHUNK * 6)
    session = await uploads.start(client, user.headers, [data, b"small"])
    for index in (0, 3):
        assert (await uploads.put(client, session, 0, index)).status_code == 201
    status = await uploads.status(client, session)
    assert status["state"] == "receiving"
    assert status["bytes_received"] == 2 * uploads.SMALL_CHUNK
    assert status["bytes_total"] == len(data) + 5
    assert status["files"][0]["missing_chunks"] == [[1, 2], [4, 5]]
    assert status["files"][1]["missing_chunks"] == [[0, 0]]
    assert status["files"][0]["chunks_received"] == 2
    assert [e["state"] for e in status["timeline"]] == ["created", "receiving"]
    # The owner's bearer token reads the same status.
    assert (await uploads.status(client, session, user.headers))["bytes_received"] == status[
        "bytes_received"
    ]


async def test_other_users_cannot_see_an_upload_but_admins_can(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    owner = await sign_in(client, app)
    session = await uploads.start(client, owner.headers, [b"abc"])
    stranger = await sign_in(client, app)
    response = await client.get(f"{API}/{session.id}", headers=stranger.headers)
    assert response.status_code == 404
    assert response.json()["code"] == "upload_not_found"
    listing = await client.get(API, headers=stranger.headers)
    assert session.id not in listing.text
    admin = await sign_in(client, app, role=Role.admin)
    assert (await client.get(f"{API}/{session.id}", headers=admin.headers)).status_code == 200


async def test_list_is_the_users_own_newest_first_filtered_and_paged(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    user = await sign_in(client, app)
    ids = []
    for modality in ("CT", "MR", "CT"):
        ids.append((await uploads.start(client, user.headers, [b"x"], modality=modality)).id)
    page = (await client.get(API, params={"limit": 2}, headers=user.headers)).json()
    assert page["total"] == 3
    assert [item["upload_id"] for item in page["items"]] == [ids[2], ids[1]]
    second = (await client.get(API, params={"limit": 2, "offset": 2}, headers=user.headers)).json()
    assert [item["upload_id"] for item in second["items"]] == [ids[0]]
    ct = (await client.get(API, params={"modality": "ct"}, headers=user.headers)).json()
    assert {item["upload_id"] for item in ct["items"]} == {ids[0], ids[2]}
    created = (await client.get(API, params={"state": "created"}, headers=user.headers)).json()
    assert created["total"] == 3
    none = (await client.get(API, params={"state": "validated"}, headers=user.headers)).json()
    assert none["total"] == 0
    bad = await client.get(API, params={"limit": 1000}, headers=user.headers)
    assert bad.status_code == 422


async def test_complete_with_missing_chunks_is_409_listing_them(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    user = await sign_in(client, app)
    session = await uploads.start(client, user.headers, [bytes(uploads.SMALL_CHUNK * 3)])
    assert (await uploads.put(client, session, 0, 1)).status_code == 201
    response = await client.post(f"{API}/{session.id}/complete", headers=session.token_headers)
    assert response.status_code == 409
    body = response.json()
    assert body["code"] == "upload_incomplete"
    assert body["missing"] == [{"file_id": session.file_id(), "missing_chunks": [[0, 0], [2, 2]]}]
    assert (await uploads.status(client, session))["state"] == "receiving"


async def test_complete_is_idempotent(client: httpx.AsyncClient, app: FastAPI) -> None:
    user = await sign_in(client, app)
    session = await uploads.start(client, user.headers, [instance()])
    await uploads.send_all(client, session)
    status = await uploads.complete_and_wait(client, app, session)
    assert status["state"] == "delivered"
    again = await client.post(f"{API}/{session.id}/complete", headers=session.token_headers)
    assert again.status_code == 202
    assert again.json()["state"] == "delivered"
    timeline = (await uploads.status(client, session))["timeline"]
    assert [e["state"] for e in timeline].count("assembling") == 1


async def test_cancel_frees_the_chunks_and_is_idempotent(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    user = await sign_in(client, app)
    session = await uploads.start(client, user.headers, [bytes(uploads.SMALL_CHUNK * 2)])
    await uploads.send_all(client, session)
    key = chunk_key(uuid.UUID(session.id), uuid.UUID(session.file_id()), 0)
    store = app.state.resources.chunk_store
    assert await store.size_of(key) == uploads.SMALL_CHUNK
    response = await client.delete(f"{API}/{session.id}", headers=session.token_headers)
    assert response.status_code == 204
    assert await store.size_of(key) is None
    assert (await client.delete(f"{API}/{session.id}", headers=user.headers)).status_code == 204
    status = await uploads.status(client, session, user.headers)
    assert status["state"] == "cancelled"
    assert [e["state"] for e in status["timeline"]][-1] == "cancelled"
    completing = await client.post(f"{API}/{session.id}/complete", headers=user.headers)
    assert completing.status_code == 409


async def test_validated_upload_cannot_be_cancelled(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    user = await sign_in(client, app)
    session = await uploads.start(client, user.headers, [instance()])
    await uploads.send_all(client, session)
    await uploads.complete_and_wait(client, app, session)
    response = await client.delete(f"{API}/{session.id}", headers=user.headers)
    assert response.status_code == 409
    assert response.json()["code"] == "upload_not_cancellable"


async def test_cancelling_a_session_past_its_expiry_is_410_before_the_expiry_job_too(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    user = await sign_in(client, app)
    session = await uploads.start(client, user.headers, [bytes(uploads.SMALL_CHUNK * 2)])
    assert (await uploads.put(client, session, 0, 0)).status_code == 201
    await _age(app, session.id)
    for headers in (user.headers, session.token_headers):
        assert_problem(
            await client.delete(f"{API}/{session.id}", headers=headers), 410, "upload_expired"
        )
    status = await uploads.status(client, session, user.headers)
    assert status["state"] == "receiving"  # unchanged: the expiry job marks it and frees it
    key = chunk_key(uuid.UUID(session.id), uuid.UUID(session.file_id()), 0)
    assert await app.state.resources.chunk_store.size_of(key) == uploads.SMALL_CHUNK


async def test_expiry_job_expires_only_unfinished_sessions_frees_their_chunks_and_tells_once(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    user = await sign_in(client, app)
    unfinished = await uploads.start(client, user.headers, [bytes(uploads.SMALL_CHUNK * 2)])
    assert (await uploads.put(client, unfinished, 0, 0)).status_code == 201
    fresh = await uploads.start(client, user.headers, [b"fresh"])
    finished = await uploads.start(client, user.headers, [instance()])
    await uploads.send_all(client, finished)
    await uploads.complete_and_wait(client, app, finished)
    await _age(app, unfinished.id)
    await _age(app, finished.id)

    await _run_expiry(app)
    await _run_expiry(app)  # a second sweep changes nothing and tells nobody again

    expired = await uploads.status(client, unfinished, user.headers)
    assert expired["state"] == "expired"
    assert expired["timeline"][-1]["state"] == "expired"
    key = chunk_key(uuid.UUID(unfinished.id), uuid.UUID(unfinished.file_id()), 0)
    assert await app.state.resources.chunk_store.size_of(key) is None
    assert (await uploads.status(client, fresh))["state"] == "created"
    assert (await uploads.status(client, finished, user.headers))["state"] == "delivered"
    gone = await client.post(f"{API}/{unfinished.id}/complete", headers=user.headers)
    assert gone.status_code == 410
    assert gone.json()["code"] == "upload_expired"

    # The uploader is told once, without the patient's name; the delivered study, also past
    # its session's end, was told it arrived, and nothing else.
    notes = await _notifications(client, user.headers)
    failed = [n for n in notes if n["type"] == "upload_failed"]
    assert [n["upload_id"] for n in failed] == [unfinished.id]
    expired_at = datetime.fromisoformat(expired["expires_at"]).strftime("%Y-%m-%d %H:%M UTC")
    reason = f"the upload session expired at {expired_at} before all files were sent"
    assert failed[0]["data"] == {"state": "expired", "reasons": [reason]}
    assert failed[0]["body"] == f"CT CT HEAD of 2024-05-17 could not be delivered: {reason}"
    assert expired["study"]["patient_name"] not in str(failed[0])
    assert [n["type"] for n in notes if n["upload_id"] == finished.id] == ["upload_complete"]


async def test_readiness_checks_the_chunk_store(client: httpx.AsyncClient) -> None:
    response = await client.get("/readyz")
    assert response.status_code == 200
    assert response.json()["checks"]["chunk_store"] == "ok"


async def test_viewing_an_upload_is_audited(client: httpx.AsyncClient, app: FastAPI) -> None:
    from sqlalchemy import select

    from relaypacs.audit.models import AuditEvent

    user = await sign_in(client, app)
    session = await uploads.start(client, user.headers, [b"abc"])
    await uploads.status(client, session, user.headers)
    async with app.state.sessionmaker() as db:
        actions = (
            await db.scalars(select(AuditEvent.action).where(AuditEvent.target_id == session.id))
        ).all()
    assert {"upload.created", "upload.viewed"} <= set(actions)
