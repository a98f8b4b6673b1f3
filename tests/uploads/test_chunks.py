"""PUT …/chunks/{index}: every status code, bad inputs, idempotency and races."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import func, select, update

from relaypacs.db.base import utcnow
from relaypacs.uploads.models import Upload, UploadChunk
from relaypacs.uploads.store import chunk_key
from tests.support import uploads
from tests.support.accounts import sign_in
from tests.support.dicom_studies import instance
from tests.support.statements import captured_statements

CHUNK = uploads.SMALL_CHUNK


async def _stored(app: FastAPI, session: uploads.Session, position: int, index: int) -> int | None:
    store = app.state.resources.chunk_store
    key = chunk_key(uuid.UUID(session.id), uuid.UUID(session.file_id(position)), index)
    size: int | None = await store.size_of(key)
    return size


async def _read(app: FastAPI, session: uploads.Session, position: int, index: int) -> bytes:
    store = app.state.resources.chunk_store
    key = chunk_key(uuid.UUID(session.id), uuid.UUID(session.file_id(position)), index)
    return b"".join([block async for block in store.read(key)])


async def _chunk_rows(app: FastAPI, session: uploads.Session) -> int:
    async with app.state.sessionmaker() as db:
        statement = select(func.count()).where(UploadChunk.upload_id == uuid.UUID(session.id))
        return int((await db.execute(statement)).scalar_one())


@pytest.fixture
async def started(client: httpx.AsyncClient, app: FastAPI) -> uploads.Session:
    user = await sign_in(client, app)
    data = bytes(range(256)) * (CHUNK * 2 // 256) + b"tail-bytes"  # 3 chunks, last one short
    return await uploads.start(client, user.headers, [data])


async def test_new_chunk_is_201_and_the_same_bytes_again_200(
    client: httpx.AsyncClient, app: FastAPI, started: uploads.Session
) -> None:
    first = await uploads.put(client, started, 0, 1)
    assert first.status_code == 201, first.text
    assert first.json() == {
        "upload_id": started.id,
        "file_id": started.file_id(),
        "index": 1,
        "size": CHUNK,
        "md5": uploads.md5_b64(started.chunk(0, 1)),
    }
    again = await uploads.put(client, started, 0, 1)
    assert again.status_code == 200
    status = await uploads.status(client, started)
    assert status["bytes_received"] == CHUNK  # counted once
    assert await _read(app, started, 0, 1) == started.chunk(0, 1)


async def test_different_bytes_for_a_stored_chunk_are_409_and_keep_the_first(
    client: httpx.AsyncClient, app: FastAPI, started: uploads.Session
) -> None:
    assert (await uploads.put(client, started, 0, 0)).status_code == 201
    other = bytes(CHUNK)
    response = await uploads.put(client, started, 0, 0, other)
    assert response.status_code == 409
    assert response.json()["code"] == "chunk_conflict"
    assert await _read(app, started, 0, 0) == started.chunk(0, 0)


async def test_md5_mismatch_is_400_and_nothing_is_stored(
    client: httpx.AsyncClient, app: FastAPI, started: uploads.Session
) -> None:
    wrong = uploads.md5_b64(b"something else")
    response = await uploads.put(client, started, 0, 0, md5=wrong)
    assert response.status_code == 400
    assert response.json()["code"] == "checksum_mismatch"
    assert await _stored(app, started, 0, 0) is None
    assert await _chunk_rows(app, started) == 0
    # The right bytes afterwards are a normal first store.
    assert (await uploads.put(client, started, 0, 0)).status_code == 201


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "not base64!!",
        base64.b64encode(b"short").decode(),
        hashlib.md5(b"x").hexdigest(),  # hex instead of base64
        base64.b64encode(hashlib.sha256(b"x").digest()).decode(),
    ],
)
async def test_missing_or_malformed_content_md5_is_400(
    client: httpx.AsyncClient, app: FastAPI, started: uploads.Session, header: str | None
) -> None:
    headers = dict(started.token_headers)
    if header is not None:
        headers["Content-MD5"] = header
    response = await client.put(
        started.chunk_url(0, 0), content=started.chunk(0, 0), headers=headers
    )
    assert response.status_code == 400
    assert response.json()["code"] == "invalid_content_md5"
    assert await _chunk_rows(app, started) == 0


async def test_wrong_size_is_400_chunk_size_mismatch(
    client: httpx.AsyncClient, app: FastAPI, started: uploads.Session
) -> None:
    short = started.chunk(0, 0)[:-1]
    response = await uploads.put(client, started, 0, 0, short)
    assert response.status_code == 400
    assert response.json()["code"] == "chunk_size_mismatch"
    last = started.chunk(0, 2) + b"!"
    response = await uploads.put(client, started, 0, 2, last)
    assert response.status_code == 400
    empty = await uploads.put(client, started, 0, 2, b"")
    assert empty.status_code == 400
    assert empty.json()["code"] == "chunk_size_mismatch"
    assert await _chunk_rows(app, started) == 0


async def test_content_length_over_chunk_size_is_413_before_reading(
    client: httpx.AsyncClient, app: FastAPI, started: uploads.Session
) -> None:
    body = bytes(CHUNK + 1)
    response = await uploads.put(client, started, 0, 0, body)
    assert response.status_code == 413
    assert response.json()["code"] == "chunk_too_large"
    assert await _chunk_rows(app, started) == 0


async def test_streamed_body_growing_past_chunk_size_is_413(
    client: httpx.AsyncClient, app: FastAPI, started: uploads.Session
) -> None:
    sent = 0

    async def endless() -> AsyncIterator[bytes]:
        nonlocal sent
        for _ in range(64):  # 4 MiB in all, with no Content-Length (chunked encoding)
            sent += 64 * 1024
            yield bytes(64 * 1024)

    response = await client.put(
        started.chunk_url(0, 0),
        content=endless(),
        headers={**started.token_headers, "Content-MD5": uploads.md5_b64(b"")},
    )
    assert response.status_code == 413
    assert response.json()["code"] == "chunk_too_large"
    assert await _stored(app, started, 0, 0) is None
    assert await _chunk_rows(app, started) == 0


@pytest.mark.parametrize("index", ["-1", "3", "99999999999999999999", "abc", "1.0"])
async def test_unknown_index_is_404(
    client: httpx.AsyncClient, started: uploads.Session, index: str
) -> None:
    response = await client.put(
        started.chunk_url(0, index),
        content=b"x",
        headers={**started.token_headers, "Content-MD5": uploads.md5_b64(b"x")},
    )
    assert response.status_code == 404
    assert response.json()["code"] == "chunk_not_found"


async def test_unknown_upload_or_file_is_404(
    client: httpx.AsyncClient, app: FastAPI, started: uploads.Session
) -> None:
    user = await sign_in(client, app)
    headers = {**user.headers, "Content-MD5": uploads.md5_b64(b"x")}
    for upload_id in (str(uuid.uuid4()), "not-a-uuid"):
        response = await client.put(
            f"/api/v1/uploads/{upload_id}/files/{started.file_id()}/chunks/0",
            content=b"x",
            headers=headers,
        )
        assert response.status_code == 404
        assert response.json()["code"] == "upload_not_found"
    for file_id in (str(uuid.uuid4()), "../../etc"):
        response = await client.put(
            f"/api/v1/uploads/{started.id}/files/{file_id}/chunks/0",
            content=b"x",
            headers={**started.token_headers, "Content-MD5": uploads.md5_b64(b"x")},
        )
        assert response.status_code == 404


async def test_token_or_owner_bearer_is_needed(
    client: httpx.AsyncClient, app: FastAPI, started: uploads.Session
) -> None:
    chunk = started.chunk(0, 0)
    none = await uploads.put(client, started, 0, 0, headers={})
    assert none.status_code == 401
    wrong = await uploads.put(client, started, 0, 0, headers={"X-Upload-Token": "forged"})
    assert wrong.status_code == 401
    assert wrong.json()["code"] == "invalid_upload_token"

    owner_id = None
    async with app.state.sessionmaker() as db:
        owner_id = (await db.get(Upload, uuid.UUID(started.id))).owner_id  # type: ignore[union-attr]
    stranger = await sign_in(client, app)
    foreign = await uploads.put(client, started, 0, 0, headers=stranger.headers)
    assert foreign.status_code == 404  # does not reveal that the upload exists
    assert stranger.id != owner_id

    other = await uploads.start(client, stranger.headers, [b"x" * 10])
    mismatched = await uploads.put(client, started, 0, 0, headers=other.token_headers)
    assert mismatched.status_code == 403
    assert mismatched.json()["code"] == "upload_token_mismatch"
    assert await _chunk_rows(app, started) == 0
    assert chunk == started.chunk(0, 0)


async def test_owner_bearer_token_works_instead_of_the_upload_token(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    user = await sign_in(client, app)
    session = await uploads.start(client, user.headers, [b"abc" * 100])
    response = await uploads.put(client, session, 0, 0, headers=user.headers)
    assert response.status_code == 201


async def test_expired_session_is_410(
    client: httpx.AsyncClient, app: FastAPI, started: uploads.Session
) -> None:
    assert (await uploads.put(client, started, 0, 0)).status_code == 201
    async with app.state.sessionmaker() as db:
        await db.execute(
            update(Upload)
            .where(Upload.id == uuid.UUID(started.id))
            .values(expires_at=utcnow() - timedelta(seconds=1))
        )
        await db.commit()
    response = await uploads.put(client, started, 0, 1)
    assert response.status_code == 410
    assert response.json()["code"] == "upload_expired"
    assert await _stored(app, started, 0, 1) is None


async def test_chunks_after_complete_or_cancel_are_409_not_receiving(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    user = await sign_in(client, app)
    data = instance()
    session = await uploads.start(client, user.headers, [data])
    await uploads.send_all(client, session)
    await uploads.complete_and_wait(client, app, session)
    response = await uploads.put(client, session, 0, 0)
    assert response.status_code == 409
    assert response.json()["code"] == "upload_not_receiving"

    cancelled = await uploads.start(client, user.headers, [data])
    delete = await client.delete(f"/api/v1/uploads/{cancelled.id}", headers=user.headers)
    assert delete.status_code == 204
    response = await uploads.put(client, cancelled, 0, 0)
    assert response.status_code == 409
    assert response.json()["code"] == "upload_not_receiving"


async def test_concurrent_identical_puts_store_once_and_all_succeed(
    client: httpx.AsyncClient, app: FastAPI, started: uploads.Session
) -> None:
    responses = await asyncio.gather(*(uploads.put(client, started, 0, 0) for _ in range(8)))
    codes = sorted(r.status_code for r in responses)
    assert codes == [200] * 7 + [201]
    assert await _chunk_rows(app, started) == 1
    assert (await uploads.status(client, started))["bytes_received"] == CHUNK
    assert await _read(app, started, 0, 0) == started.chunk(0, 0)


async def test_concurrent_different_bodies_never_mix(
    client: httpx.AsyncClient, app: FastAPI, started: uploads.Session
) -> None:
    bodies = [bytes([n]) * CHUNK for n in range(6)]
    responses = await asyncio.gather(*(uploads.put(client, started, 0, 0, b) for b in bodies))
    codes = [r.status_code for r in responses]
    assert sorted(codes) == [201] + [409] * 5
    winner = bodies[codes.index(201)]
    assert await _read(app, started, 0, 0) == winner


async def test_more_than_2000_chunks_a_minute_is_429(
    client: httpx.AsyncClient, app: FastAPI, started: uploads.Session
) -> None:
    limiter = app.state.resources.rate_limiter
    limit = app.state.settings.chunk_rate_limit
    async with app.state.sessionmaker() as db:
        owner = (await db.get(Upload, uuid.UUID(started.id))).owner_id  # type: ignore[union-attr]
    for _ in range(2000):
        await limiter.hit(limit, "upload_chunk", str(owner))
    response = await uploads.put(client, started, 0, 0)
    assert response.status_code == 429
    assert response.json()["code"] == "rate_limited"
    assert int(response.headers["retry-after"]) >= 1
    assert await _chunk_rows(app, started) == 0


async def test_a_remembered_route_still_needs_the_right_token(
    client: httpx.AsyncClient, app: FastAPI, started: uploads.Session
) -> None:
    assert (await uploads.put(client, started, 0, 0)).status_code == 201
    forged = await uploads.put(client, started, 0, 1, headers={"X-Upload-Token": "forged"})
    assert forged.status_code == 401
    stranger = await sign_in(client, app)
    other = await uploads.start(client, stranger.headers, [b"x" * 10])
    borrowed = await uploads.put(client, started, 0, 1, headers=other.token_headers)
    assert borrowed.status_code == 403
    assert await _stored(app, started, 0, 1) is None


async def test_one_chunk_remembers_the_routes_of_every_file_of_the_upload(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    # A study of many one-chunk files must not pay a database read per file before its body.
    owner = await sign_in(client, app)
    study = await uploads.start(client, owner.headers, [b"a" * 100, b"b" * 100, b"c" * 100])
    assert (await uploads.put(client, study, 0, 0)).status_code == 201
    with captured_statements(app) as statements:
        for position in (1, 2):
            assert (await uploads.put(client, study, position, 0)).status_code == 201
    assert statements, "the chunks were committed"
    assert not [s for s in statements if "upload_file" in s], statements
    for position in range(3):
        assert await _read(app, study, position, 0) == study.chunk(position, 0)


async def test_stored_chunk_is_durable_in_the_configured_store(
    client: httpx.AsyncClient, app: FastAPI, started: uploads.Session, store_kind: str
) -> None:
    assert (await uploads.put(client, started, 0, 0)).status_code == 201
    store = app.state.resources.chunk_store
    key = chunk_key(uuid.UUID(started.id), uuid.UUID(started.file_id()), 0)
    if store_kind == "s3":
        # Data at rest: every PUT asks for server-side encryption.
        head = await asyncio.to_thread(
            store.client.head_object, Bucket=store.bucket, Key=store.object_key(key)
        )
        assert head["ServerSideEncryption"] == "AES256"
        assert head["ContentLength"] == CHUNK
    else:
        path = store.path_of(key)
        assert path.is_file()
        assert path.read_bytes() == started.chunk(0, 0)
        # The temporary was renamed into place, not left behind.
        assert list(store.staging.directory.glob("*.part")) == []
