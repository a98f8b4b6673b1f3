"""Refresh rotation and reuse, logout, and revocations that act on the very next request."""

from __future__ import annotations

import uuid
from pathlib import Path

import httpx
from fastapi import FastAPI
from sqlalchemy import select

from relaypacs.audit.models import AuditEvent
from relaypacs.auth.models import RefreshToken
from relaypacs.auth.tokens import hash_refresh_token
from relaypacs.users.models import Role
from tests.conftest import make_settings
from tests.support.accounts import SignedIn, assert_problem, new_client, running_app, sign_in

REFRESH = "/api/v1/auth/refresh"
LOGOUT = "/api/v1/auth/logout"
LOGIN = "/api/v1/auth/login"
ME = "/api/v1/auth/me"


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def _actions_about(app: FastAPI, user_id: uuid.UUID) -> list[str]:
    async with app.state.sessionmaker() as session:
        rows = await session.scalars(
            select(AuditEvent.action).where(
                (AuditEvent.target_id == str(user_id)) | (AuditEvent.actor_id == user_id)
            )
        )
        return list(rows)


async def _second_sign_in(app: FastAPI, user: SignedIn) -> dict[str, str]:
    async with new_client(app) as other_device:
        response = await other_device.post(
            LOGIN, json={"username": user.username, "password": user.password}
        )
    assert response.status_code == 200
    tokens: dict[str, str] = response.json()
    return tokens


async def test_refresh_rotates_both_tokens(client: httpx.AsyncClient, app: FastAPI) -> None:
    user = await sign_in(client, app)
    response = await client.post(REFRESH, json={"refresh_token": user.refresh_token})
    assert response.status_code == 200
    tokens = response.json()
    assert tokens["refresh_token"] != user.refresh_token
    assert tokens["access_token"] != user.access_token
    assert (await client.get(ME, headers=_bearer(tokens["access_token"]))).status_code == 200


async def test_reused_refresh_token_revokes_family(client: httpx.AsyncClient, app: FastAPI) -> None:
    user = await sign_in(client, app)
    other_device = await _second_sign_in(app, user)
    first = (await client.post(REFRESH, json={"refresh_token": user.refresh_token})).json()
    rotated = (await client.post(REFRESH, json={"refresh_token": first["refresh_token"]})).json()

    # The old token shows up again after the client moved on with its successor (so not a
    # lost answer, see test_refresh_grace.py): a copy was stolen. The whole sign-in ends.
    reuse = await client.post(REFRESH, json={"refresh_token": user.refresh_token})
    assert_problem(reuse, 401, "refresh_token_reused")
    assert_problem(
        await client.post(REFRESH, json={"refresh_token": rotated["refresh_token"]}),
        401,
        "invalid_refresh_token",
    )
    assert_problem(
        await client.get(ME, headers=_bearer(rotated["access_token"])), 401, "token_revoked"
    )
    assert_problem(await client.get(ME, headers=user.headers), 401, "token_revoked")
    assert "refresh_token_reused" in await _actions_about(app, user.id)
    # Another sign-in of the same user is a different family and carries on.
    assert (await client.get(ME, headers=_bearer(other_device["access_token"]))).status_code == 200
    assert (
        await client.post(REFRESH, json={"refresh_token": other_device["refresh_token"]})
    ).status_code == 200


async def test_unknown_refresh_token_is_refused(client: httpx.AsyncClient) -> None:
    response = await client.post(REFRESH, json={"refresh_token": uuid.uuid4().hex})
    assert_problem(response, 401, "invalid_refresh_token")


async def test_expired_refresh_token_is_refused(database_url: str, tmp_path: Path) -> None:
    settings = make_settings(database_url, tmp_path, refresh_token_days=0)
    async with running_app(settings) as short_app, new_client(short_app) as http:
        user = await sign_in(http, short_app)
        response = await http.post(REFRESH, json={"refresh_token": user.refresh_token})
        assert_problem(response, 401, "invalid_refresh_token")
        # The sign-in itself is not treated as stolen: its access token still works.
        assert (await http.get(ME, headers=user.headers)).status_code == 200


async def test_logout_revokes_the_access_token_and_the_refresh_family(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    user = await sign_in(client, app)
    other_device = await _second_sign_in(app, user)
    response = await client.post(LOGOUT, headers=user.headers)
    assert response.status_code == 204
    assert_problem(await client.get(ME, headers=user.headers), 401, "token_revoked")
    assert_problem(
        await client.post(REFRESH, json={"refresh_token": user.refresh_token}),
        401,
        "invalid_refresh_token",
    )
    assert "logout" in await _actions_about(app, user.id)
    # Signing out on one device leaves the others signed in.
    assert (await client.get(ME, headers=_bearer(other_device["access_token"]))).status_code == 200


async def test_logout_needs_a_valid_token(client: httpx.AsyncClient) -> None:
    assert_problem(await client.post(LOGOUT), 401, "not_authenticated")


async def test_disabling_a_user_takes_effect_at_once(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    admin = await sign_in(client, app, role=Role.admin)
    user = await sign_in(client, app)
    response = await client.patch(
        f"/api/v1/admin/users/{user.id}", json={"is_active": False}, headers=admin.headers
    )
    assert response.status_code == 200
    assert response.json()["is_active"] is False
    assert_problem(await client.get(ME, headers=user.headers), 401, "account_disabled")
    assert_problem(
        await client.post(REFRESH, json={"refresh_token": user.refresh_token}),
        401,
        "invalid_refresh_token",
    )
    async with new_client(app) as http:
        login = await http.post(LOGIN, json={"username": user.username, "password": user.password})
    assert_problem(login, 401, "account_disabled")
    assert "user_disabled" in await _actions_about(app, user.id)

    enabled = await client.patch(
        f"/api/v1/admin/users/{user.id}", json={"is_active": True}, headers=admin.headers
    )
    assert enabled.status_code == 200
    async with new_client(app) as http:
        login = await http.post(LOGIN, json={"username": user.username, "password": user.password})
    assert login.status_code == 200
    # Tokens from before the disable stay dead.
    assert_problem(await client.get(ME, headers=user.headers), 401, "token_revoked")


async def test_role_change_takes_effect_at_once(client: httpx.AsyncClient, app: FastAPI) -> None:
    admin = await sign_in(client, app, role=Role.admin)
    user = await sign_in(client, app)
    assert_problem(
        await client.get("/api/v1/admin/users", headers=user.headers), 403, "insufficient_role"
    )
    promoted = await client.patch(
        f"/api/v1/admin/users/{user.id}", json={"role": "admin"}, headers=admin.headers
    )
    assert promoted.json()["role"] == "admin"
    # Same token as before: the role is read from the account on every request.
    assert (await client.get("/api/v1/admin/users", headers=user.headers)).status_code == 200
    await client.patch(
        f"/api/v1/admin/users/{user.id}", json={"role": "clinician"}, headers=admin.headers
    )
    assert_problem(
        await client.get("/api/v1/admin/users", headers=user.headers), 403, "insufficient_role"
    )
    assert (await _actions_about(app, user.id)).count("role_changed") == 2


async def test_password_change_ends_every_sign_in(client: httpx.AsyncClient, app: FastAPI) -> None:
    user = await sign_in(client, app)
    other_device = await _second_sign_in(app, user)
    new_password = "Another-Secret-77"
    response = await client.post(
        "/api/v1/auth/password",
        json={"current_password": user.password, "new_password": new_password},
        headers=user.headers,
    )
    assert response.status_code == 204
    for token in (user.access_token, other_device["access_token"]):
        assert_problem(await client.get(ME, headers=_bearer(token)), 401, "token_revoked")
    assert_problem(
        await client.post(REFRESH, json={"refresh_token": other_device["refresh_token"]}),
        401,
        "invalid_refresh_token",
    )
    async with new_client(app) as http:
        old = await http.post(LOGIN, json={"username": user.username, "password": user.password})
        assert_problem(old, 401, "invalid_credentials")
        new = await http.post(LOGIN, json={"username": user.username, "password": new_password})
        assert new.status_code == 200


async def test_password_change_needs_the_current_password_and_a_strong_new_one(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    user = await sign_in(client, app)
    wrong = await client.post(
        "/api/v1/auth/password",
        json={"current_password": "Not-the-password-1", "new_password": "Another-Secret-77"},
        headers=user.headers,
    )
    assert_problem(wrong, 403, "invalid_password")
    weak = await client.post(
        "/api/v1/auth/password",
        json={"current_password": user.password, "new_password": "weak"},
        headers=user.headers,
    )
    assert_problem(weak, 422, "weak_password")
    assert (await client.get(ME, headers=user.headers)).status_code == 200


async def test_guessing_the_current_password_with_a_token_is_limited_like_a_sign_in(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    # A stolen access token must not turn into an unlimited password oracle.
    user = await sign_in(client, app)
    wrong = {"current_password": "Not-the-password-1", "new_password": "Another-Secret-77"}
    answers = [
        await client.post("/api/v1/auth/password", json=wrong, headers=user.headers)
        for _ in range(6)
    ]
    for answer in answers[:5]:
        assert_problem(answer, 403, "invalid_password")
    assert answers[5].status_code == 429
    assert answers[5].json()["code"] in {"rate_limited", "account_locked"}
    assert "retry-after" in answers[5].headers
    # The guesses locked the account, as five wrong sign-ins would have.
    async with new_client(app) as http:
        login = await http.post(LOGIN, json={"username": user.username, "password": user.password})
    assert_problem(login, 429, "account_locked")


async def test_one_time_password_must_be_changed_before_anything_else(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    admin = await sign_in(client, app, role=Role.admin)
    username = "onetime_" + uuid.uuid4().hex[:8]
    created = await client.post(
        "/api/v1/admin/users",
        json={
            "username": username,
            "email": f"{username}@example.org",
            "password": "Initial-Secret-55",
            "role": "radiologist",
            "must_change_password": True,
        },
        headers=admin.headers,
    )
    assert created.status_code == 201, created.text
    login = await client.post(LOGIN, json={"username": username, "password": "Initial-Secret-55"})
    tokens = login.json()
    assert tokens["must_change_password"] is True
    headers = _bearer(tokens["access_token"])
    assert_problem(
        await client.get("/api/v1/users/me", headers=headers), 403, "password_change_required"
    )
    assert (await client.get(ME, headers=headers)).json()["must_change_password"] is True
    changed = await client.post(
        "/api/v1/auth/password",
        json={"current_password": "Initial-Secret-55", "new_password": "Chosen-Secret-66"},
        headers=headers,
    )
    assert changed.status_code == 204
    login = await client.post(LOGIN, json={"username": username, "password": "Chosen-Secret-66"})
    assert login.json()["must_change_password"] is False
    fresh = _bearer(login.json()["access_token"])
    assert (await client.get("/api/v1/users/me", headers=fresh)).status_code == 200


async def test_refresh_tokens_are_stored_only_as_hashes(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    user = await sign_in(client, app)
    rotated = (await client.post(REFRESH, json={"refresh_token": user.refresh_token})).json()
    async with app.state.sessionmaker() as session:
        rows = list(await session.scalars(select(RefreshToken)))
    stored = {
        str(getattr(row, column.key)) for row in rows for column in RefreshToken.__table__.columns
    }
    for token in (user.refresh_token, rotated["refresh_token"]):
        assert hash_refresh_token(token) in stored
        assert not any(token in value for value in stored)
