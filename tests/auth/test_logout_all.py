"""Sign out everywhere: every sign-in of the user ends at once, other users' sign-ins do not."""

from __future__ import annotations

import uuid

import httpx
from fastapi import FastAPI
from sqlalchemy import select

from relaypacs.audit.models import AuditEvent
from tests.support.accounts import SignedIn, assert_problem, new_client, sign_in

LOGOUT_ALL = "/api/v1/auth/logout-all"
REFRESH = "/api/v1/auth/refresh"
LOGIN = "/api/v1/auth/login"
ME = "/api/v1/auth/me"


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def _second_sign_in(app: FastAPI, user: SignedIn) -> dict[str, str]:
    async with new_client(app) as other_device:
        response = await other_device.post(
            LOGIN, json={"username": user.username, "password": user.password}
        )
    assert response.status_code == 200
    tokens: dict[str, str] = response.json()
    return tokens


async def _audit_details(app: FastAPI, user_id: uuid.UUID, action: str) -> list[dict[str, object]]:
    async with app.state.sessionmaker() as session:
        rows = await session.scalars(
            select(AuditEvent).where(AuditEvent.actor_id == user_id, AuditEvent.action == action)
        )
        return [dict(row.details or {}) for row in rows]


async def test_logout_all_ends_every_sign_in_of_the_user(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    user = await sign_in(client, app)
    laptop = await _second_sign_in(app, user)
    phone = await _second_sign_in(app, user)
    # A refresh family that already rotated once ends too, whatever token of it is current.
    rotated = await client.post(REFRESH, json={"refresh_token": phone["refresh_token"]})
    assert rotated.status_code == 200
    phone = rotated.json()
    bystander = await sign_in(client, app)

    response = await client.post(LOGOUT_ALL, headers=user.headers)
    assert response.status_code == 204

    for access, refresh in (
        (user.access_token, user.refresh_token),
        (laptop["access_token"], laptop["refresh_token"]),
        (phone["access_token"], phone["refresh_token"]),
    ):
        assert_problem(await client.get(ME, headers=_bearer(access)), 401, "token_revoked")
        assert_problem(
            await client.post(REFRESH, json={"refresh_token": refresh}),
            401,
            "invalid_refresh_token",
        )
    assert await _audit_details(app, user.id, "logout_all") == [
        {"sessions_ended": 3, "upload_credentials_ended": 0}
    ]

    # Someone else's sign-in carries on, and the user can sign in again afterwards.
    assert (await client.get(ME, headers=bystander.headers)).status_code == 200
    again = await _second_sign_in(app, user)
    assert (await client.get(ME, headers=_bearer(again["access_token"]))).status_code == 200


async def test_logout_all_needs_a_valid_token(client: httpx.AsyncClient, app: FastAPI) -> None:
    assert_problem(await client.post(LOGOUT_ALL), 401, "not_authenticated")
    user = await sign_in(client, app)
    assert (await client.post(LOGOUT_ALL, headers=user.headers)).status_code == 204
    # The token that asked is revoked with the rest: a second call is refused.
    assert_problem(await client.post(LOGOUT_ALL, headers=user.headers), 401, "token_revoked")


async def test_logout_all_is_documented(client: httpx.AsyncClient) -> None:
    spec = (await client.get("/openapi.json")).json()
    operation = spec["paths"]["/api/v1/auth/logout-all"]["post"]
    assert {"204", "401"} <= set(operation["responses"])
