"""POST /uploads with an Idempotency-Key: a repeat (a lost 201 retried) gets the same upload."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import anyio
import httpx
from fastapi import FastAPI
from sqlalchemy import func, select, update

from relaypacs.db.base import utcnow
from relaypacs.jobs.service import enqueue
from relaypacs.uploads.models import Upload, UploadIdempotency
from relaypacs.uploads.service import hash_token
from tests.support import uploads
from tests.support.accounts import SignedIn, assert_problem, new_client, sign_in

URL = "/api/v1/uploads"


def _request(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "study": uploads.study(),
        "files": [{"name": "IM0001.dcm", "size": 1000}, {"name": "IM0002.dcm", "size": 700}],
    }
    body.update(overrides)
    return body


def _headers(user: SignedIn, key: str) -> dict[str, str]:
    return {**user.headers, "Idempotency-Key": key}


async def _uploads_of(app: FastAPI, user: SignedIn) -> list[Upload]:
    async with app.state.sessionmaker() as session:
        return list(await session.scalars(select(Upload).where(Upload.owner_id == user.id)))


async def test_a_repeat_gets_the_same_upload_and_token(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    user = await sign_in(client, app)
    key, body = str(uuid.uuid4()), _request()
    first = await client.post(URL, json=body, headers=_headers(user, key))
    assert first.status_code == 201, first.text
    assert "idempotent-replayed" not in first.headers

    # The 201 was lost on the way; the client sends the same request again.
    again = await client.post(URL, json=body, headers=_headers(user, key.upper()))
    assert again.status_code == 201, again.text
    assert again.headers["idempotent-replayed"] == "true"
    assert again.json() == first.json()
    assert again.headers["location"] == first.headers["location"]
    assert len(await _uploads_of(app, user)) == 1

    # The token of the answer works (it is the one token of the upload).
    session = uploads.Session(again.json(), [b"a" * 1000, b"b" * 700])
    put = await client.put(
        session.chunk_url(0, 0),
        content=session.chunk(0, 0),
        headers={**session.token_headers, "Content-MD5": uploads.md5_b64(session.chunk(0, 0))},
    )
    assert put.status_code == 201, put.text

    # Without the key the same request is what it always was: a duplicate study.
    assert_problem(await client.post(URL, json=body, headers=user.headers), 409, "duplicate_study")


async def test_the_same_key_with_another_body_is_refused(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    user = await sign_in(client, app)
    key = str(uuid.uuid4())
    assert (await client.post(URL, json=_request(), headers=_headers(user, key))).status_code == 201
    other = await client.post(URL, json=_request(), headers=_headers(user, key))
    assert_problem(other, 422, "idempotency_key_reused")
    assert len(await _uploads_of(app, user)) == 1


async def test_keys_belong_to_their_user(client: httpx.AsyncClient, app: FastAPI) -> None:
    alice, bob = await sign_in(client, app), await sign_in(client, app)
    key, body = str(uuid.uuid4()), _request()
    first = await client.post(URL, json=body, headers=_headers(alice, key))
    second = await client.post(URL, json=body, headers=_headers(bob, key))
    assert first.status_code == second.status_code == 201
    assert first.json()["upload_id"] != second.json()["upload_id"]
    assert "idempotent-replayed" not in second.headers


async def test_a_refused_request_does_not_use_up_its_key(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    user = await sign_in(client, app)
    body = _request()
    assert (await client.post(URL, json=body, headers=user.headers)).status_code == 201
    key = str(uuid.uuid4())
    # The same study again: refused as a duplicate, so the key was never used...
    assert_problem(
        await client.post(URL, json=body, headers=_headers(user, key)), 409, "duplicate_study"
    )
    # ...and the confirmed retry may carry it.
    forced = await client.post(
        URL, json={**body, "force_upload": True}, headers=_headers(user, key)
    )
    assert forced.status_code == 201, forced.text
    assert len(await _uploads_of(app, user)) == 2


async def test_a_key_answers_for_24_hours(client: httpx.AsyncClient, app: FastAPI) -> None:
    user = await sign_in(client, app)
    key, body = str(uuid.uuid4()), _request()
    assert (await client.post(URL, json=body, headers=_headers(user, key))).status_code == 201
    async with app.state.sessionmaker() as session:
        row = (
            await session.scalars(
                select(UploadIdempotency).where(UploadIdempotency.owner_id == user.id)
            )
        ).one()
        await session.execute(
            update(UploadIdempotency)
            .where(UploadIdempotency.owner_id == user.id)
            .values(created_at=row.created_at - timedelta(hours=24, seconds=1))
        )
        await session.commit()
    # Past the window the key is forgotten: the request is judged afresh (a duplicate here).
    late = await client.post(URL, json=body, headers=_headers(user, key))
    assert_problem(late, 409, "duplicate_study")
    forced = await client.post(
        URL, json={**body, "force_upload": True}, headers=_headers(user, key)
    )
    assert forced.status_code == 201
    assert "idempotent-replayed" not in forced.headers


async def test_concurrent_repeats_make_one_upload(client: httpx.AsyncClient, app: FastAPI) -> None:
    user = await sign_in(client, app)
    key, body = str(uuid.uuid4()), _request()
    answers: list[httpx.Response] = []

    async def one() -> None:
        async with new_client(app) as http:
            answers.append(await http.post(URL, json=body, headers=_headers(user, key)))

    async with anyio.create_task_group() as group:
        for _ in range(4):
            group.start_soon(one)
    assert [a.status_code for a in answers] == [201] * 4, [a.text for a in answers]
    assert len({a.json()["upload_id"] for a in answers}) == 1
    assert len({a.json()["upload_token"] for a in answers}) == 1
    assert sum("idempotent-replayed" not in a.headers for a in answers) == 1
    assert len(await _uploads_of(app, user)) == 1


async def test_a_key_must_be_a_uuid(client: httpx.AsyncClient, app: FastAPI) -> None:
    user = await sign_in(client, app)
    for bad in ("1", "my-upload", "x" * 300):
        response = await client.post(URL, json=_request(), headers=_headers(user, bad))
        assert_problem(response, 400, "invalid_idempotency_key")
    assert await _uploads_of(app, user) == []


async def test_neither_key_nor_token_is_stored_usable(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    user = await sign_in(client, app)
    key = str(uuid.uuid4())
    created = (await client.post(URL, json=_request(), headers=_headers(user, key))).json()
    async with app.state.sessionmaker() as session:
        row = (
            await session.scalars(
                select(UploadIdempotency).where(UploadIdempotency.owner_id == user.id)
            )
        ).one()
        count = await session.scalar(select(func.count()).select_from(UploadIdempotency))
    assert count is not None
    assert row.key_hash == hash_token(key)
    assert str(row.upload_id) == created["upload_id"]
    stored = " ".join(str(getattr(row, c.key)) for c in UploadIdempotency.__table__.columns)
    assert key not in stored
    assert created["upload_token"] not in stored


async def test_the_expiry_sweep_forgets_keys_past_their_window(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    user = await sign_in(client, app)
    old_key, fresh_key = str(uuid.uuid4()), str(uuid.uuid4())
    old = await client.post(URL, json=_request(), headers=_headers(user, old_key))
    assert old.status_code == 201, old.text
    fresh = await client.post(URL, json=_request(), headers=_headers(user, fresh_key))
    assert fresh.status_code == 201, fresh.text
    async with app.state.sessionmaker() as db:
        await db.execute(
            update(UploadIdempotency)
            .where(UploadIdempotency.upload_id == uuid.UUID(old.json()["upload_id"]))
            .values(created_at=utcnow() - timedelta(hours=24, minutes=1))
        )
        await db.commit()

    async with uploads.job_finished(app, "uploads.expire") as done:
        async with app.state.sessionmaker() as db:
            await enqueue(db, "uploads.expire", {}, dedupe_key=f"test-{uuid.uuid4()}")
            await db.commit()
        with anyio.fail_after(30):
            await done.wait()

    async with app.state.sessionmaker() as db:
        kept = set(await db.scalars(select(UploadIdempotency.upload_id)))
    assert uuid.UUID(fresh.json()["upload_id"]) in kept
    assert uuid.UUID(old.json()["upload_id"]) not in kept
