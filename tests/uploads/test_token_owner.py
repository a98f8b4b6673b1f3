"""An upload token acts for its owner: disabling the owner's account ends it at once."""

from __future__ import annotations

import httpx
from fastapi import FastAPI

from relaypacs.uploads.dependencies import ChunkRouteCache
from relaypacs.users.models import Role
from tests.support import uploads
from tests.support.accounts import assert_problem, sign_in

API = "/api/v1"


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
