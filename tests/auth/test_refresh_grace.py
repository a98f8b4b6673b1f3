"""The refresh-token grace window: a lost answer to POST /auth/refresh is given again.

On a bad link the server can exchange a refresh token and the answer never arrive; the client then
retries with the token it still has. Within RELAYPACS_REFRESH_REUSE_GRACE_SECONDS of the exchange,
while the successor has never been used, that retry gets the very same successor (no second
branch of the family). Anything else is reuse and still ends the whole sign-in.
"""

from __future__ import annotations

import uuid

import anyio
import httpx
from fastapi import FastAPI
from sqlalchemy import select

from relaypacs.audit.models import AuditEvent
from relaypacs.auth.models import RefreshToken
from relaypacs.auth.tokens import hash_refresh_token
from relaypacs.config import Settings
from tests.support.accounts import assert_problem, new_client, running_app, sign_in

REFRESH = "/api/v1/auth/refresh"
ME = "/api/v1/auth/me"


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def _audit(app: FastAPI, user_id: uuid.UUID) -> list[AuditEvent]:
    async with app.state.sessionmaker() as session:
        rows = await session.scalars(
            select(AuditEvent)
            .where((AuditEvent.target_id == str(user_id)) | (AuditEvent.actor_id == user_id))
            .order_by(AuditEvent.occurred_at)
        )
        return list(rows)


def _settings(app: FastAPI, **changes: object) -> Settings:
    settings: Settings = app.state.settings
    return settings.model_copy(update=changes)


async def _refresh(http: httpx.AsyncClient, token: str) -> httpx.Response:
    return await http.post(REFRESH, json={"refresh_token": token})


async def test_a_lost_answer_is_given_again_with_the_same_successor(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    user = await sign_in(client, app)
    lost = await _refresh(client, user.refresh_token)
    assert lost.status_code == 200
    successor = lost.json()["refresh_token"]

    # The client never saw that answer and tries again with the token it has.
    again = await _refresh(client, user.refresh_token)
    assert again.status_code == 200, again.text
    tokens = again.json()
    assert tokens["refresh_token"] == successor
    assert 0 < tokens["refresh_expires_in"] <= lost.json()["refresh_expires_in"]
    assert (await client.get(ME, headers=_bearer(tokens["access_token"]))).status_code == 200
    # And again: the answer is the same each time, never a new branch.
    assert (await _refresh(client, user.refresh_token)).json()["refresh_token"] == successor

    # The sign-in carries on normally from the successor.
    onward = await _refresh(client, successor)
    assert onward.status_code == 200
    assert (await client.get(ME, headers=_bearer(onward.json()["access_token"]))).status_code == 200
    replays = [e for e in await _audit(app, user.id) if e.action == "refresh_token_replayed"]
    assert len(replays) == 2
    assert set(replays[0].details) == {"session_id", "seconds_after"}
    assert "refresh_token_reused" not in [e.action for e in await _audit(app, user.id)]

    # Once the successor was used, the old token showing up again is reuse: all of it ends.
    assert_problem(await _refresh(client, user.refresh_token), 401, "refresh_token_reused")
    assert_problem(
        await client.get(ME, headers=_bearer(onward.json()["access_token"])), 401, "token_revoked"
    )
    assert_problem(
        await _refresh(client, onward.json()["refresh_token"]), 401, "invalid_refresh_token"
    )


async def test_only_the_immediate_predecessor_is_answered_again(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    user = await sign_in(client, app)
    first = (await _refresh(client, user.refresh_token)).json()
    second = (await _refresh(client, first["refresh_token"])).json()
    assert second["refresh_token"] != first["refresh_token"]
    # The grandparent is within the window too, but its successor has been used.
    assert_problem(await _refresh(client, user.refresh_token), 401, "refresh_token_reused")
    assert_problem(await _refresh(client, second["refresh_token"]), 401, "invalid_refresh_token")


async def test_reuse_after_the_grace_window_still_ends_the_sign_in(app: FastAPI) -> None:
    async with (
        running_app(_settings(app, refresh_reuse_grace_seconds=0.5)) as short_app,
        new_client(short_app) as http,
    ):
        user = await sign_in(http, short_app)
        rotated = (await _refresh(http, user.refresh_token)).json()
        await anyio.sleep(0.7)  # past the window: the waiting is what is tested
        assert_problem(await _refresh(http, user.refresh_token), 401, "refresh_token_reused")
        assert_problem(
            await http.get(ME, headers=_bearer(rotated["access_token"])), 401, "token_revoked"
        )
        assert_problem(await _refresh(http, rotated["refresh_token"]), 401, "invalid_refresh_token")


async def test_a_zero_grace_window_turns_the_replay_off(app: FastAPI) -> None:
    async with (
        running_app(_settings(app, refresh_reuse_grace_seconds=0)) as strict_app,
        new_client(strict_app) as http,
    ):
        user = await sign_in(http, strict_app)
        assert (await _refresh(http, user.refresh_token)).status_code == 200
        assert_problem(await _refresh(http, user.refresh_token), 401, "refresh_token_reused")


async def test_two_refreshes_at_once_get_one_successor(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    user = await sign_in(client, app)
    answers: list[httpx.Response] = []

    async def one() -> None:
        async with new_client(app) as http:
            answers.append(await _refresh(http, user.refresh_token))

    async with anyio.create_task_group() as group:
        for _ in range(3):
            group.start_soon(one)
    assert [a.status_code for a in answers] == [200, 200, 200], [a.text for a in answers]
    assert len({a.json()["refresh_token"] for a in answers}) == 1
    assert (await _refresh(client, answers[0].json()["refresh_token"])).status_code == 200


async def test_the_stored_successor_is_no_usable_token(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    user = await sign_in(client, app)
    successor = (await _refresh(client, user.refresh_token)).json()["refresh_token"]
    async with app.state.sessionmaker() as session:
        row = (
            await session.scalars(
                select(RefreshToken).where(
                    RefreshToken.token_hash == hash_refresh_token(user.refresh_token)
                )
            )
        ).one()
    assert row.successor_sealed is not None
    assert row.successor_id is not None
    values = [str(getattr(row, c.key)) for c in RefreshToken.__table__.columns]
    assert not any(successor in v or v in successor for v in values if len(v) > 8)
