"""An upload token acts for its owner: it ends with the owner's sign-ins.

Disabling the owner's account, signing out everywhere or a new password end it at once, on every
path and in every API process, also for a route a process remembered before; the upload itself
goes on, with the owner's access token or a new upload token.
"""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

import httpx
from fastapi import FastAPI
from sqlalchemy import select

from relaypacs.audit.models import AuditEvent
from relaypacs.config import Settings
from relaypacs.uploads.dependencies import ChunkRouteCache
from relaypacs.uploads.models import Upload
from relaypacs.uploads.service import hash_token
from relaypacs.uploads.store import chunk_key
from relaypacs.users.models import Role
from tests.support import uploads
from tests.support.accounts import (
    SignedIn,
    assert_problem,
    new_client,
    running_app,
    sign_in,
)
from tests.support.dicom_studies import instance

API = "/api/v1"
LOGOUT_ALL = f"{API}/auth/logout-all"
NEW_PASSWORD = "Harbour-Lamp-Seven-47"


async def _sign_in_again(
    app: FastAPI, user: SignedIn, password: str | None = None
) -> dict[str, str]:
    """The user signs in anew (on another address, so no login limit is shared)."""
    async with new_client(app) as http:
        response = await http.post(
            f"{API}/auth/login",
            json={"username": user.username, "password": password or user.password},
        )
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


async def _audit(
    app: FastAPI, action: str, *, actor_id: uuid.UUID | None = None, target_id: str | None = None
) -> list[AuditEvent]:
    async with app.state.sessionmaker() as session:
        statement = select(AuditEvent).where(AuditEvent.action == action)
        if actor_id is not None:
            statement = statement.where(AuditEvent.actor_id == actor_id)
        if target_id is not None:
            statement = statement.where(AuditEvent.target_id == target_id)
        return list((await session.scalars(statement)).all())


async def _stored(app: FastAPI, session: uploads.Session, position: int, index: int) -> int | None:
    key = chunk_key(uuid.UUID(session.id), uuid.UUID(session.file_id(position)), index)
    size: int | None = await app.state.resources.chunk_store.size_of(key)
    return size


async def _updated_at(app: FastAPI, upload_id: str) -> datetime:
    async with app.state.sessionmaker() as session:
        upload = await session.get(Upload, uuid.UUID(upload_id))
        assert upload is not None
        return upload.updated_at


def _states(status: dict[str, Any]) -> list[str]:
    return [e["state"] for e in status["timeline"]]


async def test_disabling_the_owner_ends_the_upload_token_on_every_path(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    owner = await sign_in(client, app)
    admin = await sign_in(client, app, role=Role.admin)
    session = await uploads.start(
        client, owner.headers, [bytes(uploads.SMALL_CHUNK * 2), b"the second file"]
    )
    # This process now remembers the routes of both files (the chunk PUT's fast path).
    assert (await uploads.put(client, session, 0, 0)).status_code == 201
    disabled = await client.patch(
        f"{API}/admin/users/{owner.id}", json={"is_active": False}, headers=admin.headers
    )
    assert disabled.status_code == 200, disabled.text

    assert_problem(await uploads.put(client, session, 0, 1), 401, "account_disabled")
    app.state.uploads_route_cache = ChunkRouteCache()  # as in another API process
    assert_problem(await uploads.put(client, session, 1, 0), 401, "account_disabled")
    url = f"{API}/uploads/{session.id}"
    token = session.token_headers
    assert_problem(await client.get(url, headers=token), 401, "account_disabled")
    assert_problem(await client.post(f"{url}/complete", headers=token), 401, "account_disabled")
    assert_problem(await client.delete(url, headers=token), 401, "account_disabled")

    seen = await uploads.status(client, session, admin.headers)
    assert seen["state"] == "receiving"
    assert seen["bytes_received"] == uploads.SMALL_CHUNK  # the first chunk only


async def test_enabling_the_account_again_brings_no_upload_token_back(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    owner = await sign_in(client, app)
    admin = await sign_in(client, app, role=Role.admin)
    session = await uploads.start(client, owner.headers, [bytes(uploads.SMALL_CHUNK * 2)])
    assert (await uploads.put(client, session, 0, 0)).status_code == 201
    for active in (False, True):
        response = await client.patch(
            f"{API}/admin/users/{owner.id}", json={"is_active": active}, headers=admin.headers
        )
        assert response.status_code == 200, response.text

    assert_problem(await uploads.put(client, session, 0, 1), 401, "upload_token_revoked")
    (event,) = await _audit(app, "user_disabled", target_id=str(owner.id))
    assert event.details == {"upload_credentials_ended": 1}


async def test_signing_out_everywhere_ends_the_owners_upload_tokens_on_every_path(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    owner = await sign_in(client, app)
    other = await sign_in(client, app)
    session = await uploads.start(
        client, owner.headers, [bytes(uploads.SMALL_CHUNK * 2), b"the second file"]
    )
    second = await uploads.start(client, owner.headers, [b"another study"])
    theirs = await uploads.start(client, other.headers, [bytes(uploads.SMALL_CHUNK * 2)])
    # This process now remembers the routes of both files (the chunk PUT's fast path).
    assert (await uploads.put(client, session, 0, 0)).status_code == 201
    assert (await uploads.put(client, theirs, 0, 0)).status_code == 201
    # Signing out of one device only leaves the upload tokens alone.
    device = await _sign_in_again(app, owner)
    assert (await client.post(f"{API}/auth/logout", headers=device)).status_code == 204
    assert (await client.get(f"{API}/uploads/{second.id}", headers=second.token_headers)).is_success
    # It dates an upload's last change (retention reads it): a revoked token is none.
    last_change = await _updated_at(app, session.id)

    assert (await client.post(LOGOUT_ALL, headers=owner.headers)).status_code == 204

    assert_problem(await uploads.put(client, session, 0, 1), 401, "upload_token_revoked")
    app.state.uploads_route_cache = ChunkRouteCache()  # as in another API process
    assert_problem(await uploads.put(client, session, 1, 0), 401, "upload_token_revoked")
    url = f"{API}/uploads/{session.id}"
    token = session.token_headers
    problem = assert_problem(await client.get(url, headers=token), 401, "upload_token_revoked")
    assert "patient" not in str(problem).lower()
    assert_problem(await client.post(f"{url}/complete", headers=token), 401, "upload_token_revoked")
    assert_problem(await client.delete(url, headers=token), 401, "upload_token_revoked")
    assert_problem(await uploads.put(client, second, 0, 0), 401, "upload_token_revoked")
    (event,) = await _audit(app, "logout_all", actor_id=owner.id)
    assert event.details == {"sessions_ended": 1, "upload_credentials_ended": 2}

    # Another user's upload token is untouched.
    assert (await uploads.put(client, theirs, 0, 1)).status_code == 201
    assert (await uploads.status(client, theirs))["bytes_received"] == uploads.SMALL_CHUNK * 2

    # The refusals changed nothing: no chunk, no state, no cancel, no completion, no view.
    assert await _audit(app, "upload.viewed", target_id=session.id) == []
    again = await _sign_in_again(app, owner)
    seen = await uploads.status(client, session, again)
    assert seen["state"] == "receiving"
    assert seen["bytes_received"] == uploads.SMALL_CHUNK
    assert _states(seen) == ["created", "receiving"]
    assert await _stored(app, session, 0, 1) is None
    assert await _stored(app, session, 1, 0) is None
    assert _states(await uploads.status(client, second, again)) == ["created"]
    assert await _updated_at(app, session.id) == last_change


async def test_a_new_password_ends_the_upload_token_and_the_owner_finishes_with_the_sign_in(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    owner = await sign_in(client, app)
    first = instance(rows=512, columns=600)  # ~600 KiB: two chunks
    second = instance(rows=64, columns=64)
    session = await uploads.start(client, owner.headers, [first, second])
    assert (await uploads.put(client, session, 0, 0)).status_code == 201

    changed = await client.post(
        f"{API}/auth/password",
        json={"current_password": owner.password, "new_password": NEW_PASSWORD},
        headers=owner.headers,
    )
    assert changed.status_code == 204, changed.text

    assert_problem(await uploads.put(client, session, 0, 1), 401, "upload_token_revoked")
    url = f"{API}/uploads/{session.id}"
    assert_problem(
        await client.get(url, headers=session.token_headers), 401, "upload_token_revoked"
    )
    (event,) = await _audit(app, "password_changed", actor_id=owner.id)
    assert event.details == {"upload_credentials_ended": 1}

    # Signed in with the new password, the owner sends only what is missing, with the sign-in.
    again = await _sign_in_again(app, owner, NEW_PASSWORD)
    missing = (await uploads.status(client, session, again))["files"]
    assert [f["missing_chunks"] for f in missing] == [[[1, 1]], [[0, 0]]]
    for position, index in ((0, 1), (1, 0)):
        response = await uploads.put(client, session, position, index, headers=again)
        assert response.status_code == 201, response.text
    after = await uploads.complete_and_wait(client, app, session, headers=again)
    assert after["state"] == "delivered", after
    assert [f["sha256"] for f in after["files"]] == [
        hashlib.sha256(first).hexdigest(),
        hashlib.sha256(second).hexdigest(),
    ]


async def test_the_owner_gets_a_new_upload_token_for_the_same_upload_and_only_it_works(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    owner = await sign_in(client, app)
    admin = await sign_in(client, app, role=Role.admin)
    stranger = await sign_in(client, app)
    content = instance(rows=512, columns=600)  # two chunks
    session = await uploads.start(client, owner.headers, [content])
    assert (await uploads.put(client, session, 0, 0)).status_code == 201
    assert (await client.post(LOGOUT_ALL, headers=owner.headers)).status_code == 204
    again = await _sign_in_again(app, owner)
    url = f"{API}/uploads/{session.id}/token"

    # Only the owner's sign-in opens it: never an upload token, nor someone else's sign-in.
    assert_problem(await client.post(url, headers=session.token_headers), 401, "not_authenticated")
    assert_problem(await client.post(url, headers=admin.headers), 403, "not_upload_owner")
    assert_problem(await client.post(url, headers=stranger.headers), 404, "upload_not_found")
    issued = await client.post(url, headers=again)
    assert issued.status_code == 200, issued.text
    body = issued.json()
    assert body["upload_id"] == session.id
    assert datetime.fromisoformat(body["expires_at"]) == datetime.fromisoformat(
        session.body["expires_at"]
    )
    revoked = session.token_headers
    session.body["upload_token"] = body["upload_token"]
    assert session.token_headers != revoked

    assert_problem(
        await uploads.put(client, session, 0, 1, headers=revoked), 401, "invalid_upload_token"
    )
    assert (await uploads.put(client, session, 0, 1)).status_code == 201
    after = await uploads.complete_and_wait(client, app, session)
    assert after["state"] == "delivered", after
    assert after["files"][0]["sha256"] == hashlib.sha256(content).hexdigest()
    (event,) = await _audit(app, "upload.token_issued", target_id=session.id)
    assert event.actor_id == owner.id
    assert body["upload_token"] not in str(event.details)

    # One live token per upload: the next one ends this one.
    newer = await client.post(url, headers=again)
    assert newer.status_code == 200, newer.text
    status_url = f"{API}/uploads/{session.id}"
    assert_problem(
        await client.get(status_url, headers=session.token_headers), 401, "invalid_upload_token"
    )
    newest = {"X-Upload-Token": newer.json()["upload_token"]}
    assert (await client.get(status_url, headers=newest)).status_code == 200


async def test_a_route_remembered_before_the_revocation_stores_nothing_after_it(
    client: httpx.AsyncClient, app: FastAPI, settings: Settings
) -> None:
    owner = await sign_in(client, app)
    session = await uploads.start(client, owner.headers, [bytes(uploads.SMALL_CHUNK * 3)])
    key = (hash_token(session.body["upload_token"]), session.id)
    async with running_app(settings) as other_app, new_client(other_app) as other:
        # Both API processes remember the file's route, checked with the token.
        assert (await uploads.put(client, session, 0, 0)).status_code == 201
        assert (await uploads.put(other, session, 0, 1)).status_code == 201
        assert app.state.uploads_route_cache.get(key) is not None
        assert other_app.state.uploads_route_cache.get(key) is not None

        # The owner signs out everywhere through the second process.
        signed_out = await other.post(LOGOUT_ALL, headers=owner.headers)
        assert signed_out.status_code == 204, signed_out.text

        assert_problem(await uploads.put(client, session, 0, 2), 401, "upload_token_revoked")
        # Forgotten: the next chunk with that token is refused before its body is read.
        assert app.state.uploads_route_cache.get(key) is None
        assert_problem(await uploads.put(other, session, 0, 2), 401, "upload_token_revoked")
        assert other_app.state.uploads_route_cache.get(key) is None

    assert await _stored(app, session, 0, 2) is None
    seen = await uploads.status(client, session, await _sign_in_again(app, owner))
    assert seen["bytes_received"] == uploads.SMALL_CHUNK * 2


async def test_a_chunk_on_its_way_when_the_owner_signed_out_everywhere_is_not_stored(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    owner = await sign_in(client, app)
    session = await uploads.start(client, owner.headers, [bytes(range(256)) * 2048])
    data = session.chunk(0, 0)
    token_checked, go_on = asyncio.Event(), asyncio.Event()

    async def body() -> AsyncIterator[bytes]:
        yield data[: 64 * 1024]
        # The gateway asks for more: it checked the token and is reading the body.
        token_checked.set()
        await go_on.wait()
        yield data[64 * 1024 :]

    sending = asyncio.create_task(
        client.put(
            session.chunk_url(0, 0),
            content=body(),
            headers={**session.token_headers, "Content-MD5": uploads.md5_b64(data)},
        )
    )
    await asyncio.wait_for(token_checked.wait(), 30)
    assert (await client.post(LOGOUT_ALL, headers=owner.headers)).status_code == 204
    go_on.set()

    assert_problem(await sending, 401, "upload_token_revoked")
    assert await _stored(app, session, 0, 0) is None
    seen = await uploads.status(client, session, await _sign_in_again(app, owner))
    assert seen["bytes_received"] == 0
    assert seen["state"] == "created"
    assert _states(seen) == ["created"]


async def test_repeating_a_start_after_the_revocation_answers_with_a_token_that_works(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    owner = await sign_in(client, app)
    body = {
        "study": uploads.study(),
        "files": [{"name": "a.dcm", "size": uploads.SMALL_CHUNK * 2}],
        "chunk_size": uploads.SMALL_CHUNK,
    }
    key = {"Idempotency-Key": str(uuid.uuid4())}
    first = await client.post(f"{API}/uploads", json=body, headers={**owner.headers, **key})
    assert first.status_code == 201, first.text
    assert (await client.post(LOGOUT_ALL, headers=owner.headers)).status_code == 204
    again = await _sign_in_again(app, owner)

    repeated = await client.post(f"{API}/uploads", json=body, headers={**again, **key})

    assert repeated.status_code == 201, repeated.text
    assert repeated.headers["Idempotent-Replayed"] == "true"
    assert repeated.json()["upload_id"] == first.json()["upload_id"]
    session = uploads.Session(repeated.json(), [bytes(uploads.SMALL_CHUNK * 2)])
    revoked = {"X-Upload-Token": first.json()["upload_token"]}
    assert session.token_headers != revoked
    assert_problem(
        await uploads.put(client, session, 0, 0, headers=revoked), 401, "invalid_upload_token"
    )
    assert (await uploads.put(client, session, 0, 0)).status_code == 201
    # A further repeat answers with that same working token.
    once_more = await client.post(f"{API}/uploads", json=body, headers={**again, **key})
    assert once_more.json()["upload_token"] == repeated.json()["upload_token"]


async def test_the_revocation_and_the_new_token_are_in_the_api_description(
    client: httpx.AsyncClient,
) -> None:
    spec = (await client.get("/openapi.json")).json()
    paths = spec["paths"]
    for path, method in (
        ("/api/v1/uploads/{upload_id}", "get"),
        ("/api/v1/uploads/{upload_id}/complete", "post"),
        ("/api/v1/uploads/{upload_id}", "delete"),
        ("/api/v1/uploads/{upload_id}/files/{file_id}/chunks/{index}", "put"),
    ):
        assert "upload_token_revoked" in paths[path][method]["responses"]["401"]["description"]
    issue = paths["/api/v1/uploads/{upload_id}/token"]["post"]["responses"]
    assert "not_upload_owner" in issue["403"]["description"]
    assert "upload_not_found" in issue["404"]["description"]


async def test_an_admin_sees_an_upload_but_cannot_put_bytes_into_it(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    # What the PACS gets is exactly what the uploader's client sent (promise 5).
    owner = await sign_in(client, app)
    admin = await sign_in(client, app, role=Role.admin)
    content = instance(rows=512, columns=600)  # two chunks
    session = await uploads.start(client, owner.headers, [content])
    refused = await uploads.put(client, session, 0, 0, headers=admin.headers)
    assert_problem(refused, 403, "not_upload_owner")
    seen = await uploads.status(client, session, admin.headers)
    assert seen["bytes_received"] == 0
    # The owner's own access token still sends chunks.
    assert (await uploads.put(client, session, 0, 0, headers=owner.headers)).status_code == 201
