"""The signed-in user's own account: profile, preferences and the personal-data export."""

from __future__ import annotations

import uuid

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select

from relaypacs.audit.models import AuditEvent
from tests.support.accounts import assert_problem, sign_in

ME = "/api/v1/users/me"
PREFERENCES = "/api/v1/users/me/preferences"
EXPORT = "/api/v1/users/me/export"
MIB = 1024 * 1024


async def _actions(app: FastAPI, user_id: uuid.UUID) -> list[str]:
    async with app.state.sessionmaker() as session:
        rows = await session.scalars(
            select(AuditEvent.action).where(AuditEvent.actor_id == user_id)
        )
        return list(rows)


async def test_me_describes_the_signed_in_user(client: httpx.AsyncClient, app: FastAPI) -> None:
    user = await sign_in(client, app)
    response = await client.get(ME, headers=user.headers)
    assert response.status_code == 200
    assert response.json()["id"] == str(user.id)
    assert_problem(await client.get(ME), 401, "not_authenticated")


async def test_email_can_be_changed_and_stays_unique(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    user = await sign_in(client, app)
    other = await sign_in(client, app)
    new_email = f"New.{user.username}@Example.org"
    response = await client.patch(ME, json={"email": new_email}, headers=user.headers)
    assert response.status_code == 200
    assert response.json()["email"] == new_email.lower()
    taken = await client.patch(ME, json={"email": other.email.upper()}, headers=user.headers)
    assert_problem(taken, 409, "email_taken")
    assert (await client.get(ME, headers=user.headers)).json()["email"] == new_email.lower()


@pytest.mark.parametrize("role", ["admin", "radiologist"])
async def test_role_escalation_through_patch_me_is_refused(
    client: httpx.AsyncClient, app: FastAPI, role: str
) -> None:
    user = await sign_in(client, app)
    response = await client.patch(ME, json={"role": role}, headers=user.headers)
    assert_problem(response, 403, "role_change_forbidden")
    assert (await client.get(ME, headers=user.headers)).json()["role"] == "clinician"
    assert_problem(
        await client.get("/api/v1/admin/users", headers=user.headers), 403, "insufficient_role"
    )
    assert "role_change_refused" in await _actions(app, user.id)


async def test_unknown_profile_fields_are_refused(client: httpx.AsyncClient, app: FastAPI) -> None:
    user = await sign_in(client, app)
    response = await client.patch(
        ME, json={"is_active": True, "username": "x"}, headers=user.headers
    )
    assert_problem(response, 422, "validation_error")


async def test_preferences_have_defaults_and_can_be_replaced(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    user = await sign_in(client, app)
    defaults = (await client.get(PREFERENCES, headers=user.headers)).json()
    assert defaults == {
        "default_service_level": "routine",
        "chunk_size": MIB,
        "duplicate_warnings": True,
    }
    wanted = {"default_service_level": "stat", "chunk_size": 4 * MIB, "duplicate_warnings": False}
    response = await client.put(PREFERENCES, json=wanted, headers=user.headers)
    assert response.status_code == 200
    assert response.json() == wanted
    assert (await client.get(PREFERENCES, headers=user.headers)).json() == wanted


@pytest.mark.parametrize(
    "bad",
    [
        {"chunk_size": 512 * 1024 - 1},
        {"chunk_size": 10 * MIB + 1},
        {"default_service_level": "whenever"},
        {"duplicate_warnings": "perhaps"},
        {"duplicate_warnings": "no"},  # a JSON string is not a boolean, whatever it says
        {"duplicate_warnings": 0},
        {"chunk_size": "1048576"},
        {"surprise": 1},
    ],
)
async def test_invalid_preferences_are_refused_and_nothing_changes(
    client: httpx.AsyncClient, app: FastAPI, bad: dict[str, object]
) -> None:
    user = await sign_in(client, app)
    before = (await client.get(PREFERENCES, headers=user.headers)).json()
    response = await client.put(PREFERENCES, json=before | bad, headers=user.headers)
    assert_problem(response, 422, "validation_error")
    assert (await client.get(PREFERENCES, headers=user.headers)).json() == before


async def test_chunk_size_limits_are_inclusive(client: httpx.AsyncClient, app: FastAPI) -> None:
    user = await sign_in(client, app)
    for size in (512 * 1024, 10 * MIB):
        body = {"default_service_level": "routine", "chunk_size": size, "duplicate_warnings": True}
        assert (await client.put(PREFERENCES, json=body, headers=user.headers)).status_code == 200


async def test_export_holds_everything_about_the_user_and_is_audited(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    user = await sign_in(client, app)
    response = await client.get(EXPORT, headers=user.headers)
    assert response.status_code == 200
    export = response.json()
    assert export["user"]["id"] == str(user.id)
    assert export["preferences"]["chunk_size"] == MIB
    assert export["two_factor"]["enabled"] is False
    assert len(export["sessions"]) >= 1
    actions = {event["action"] for event in export["audit_events"]}
    assert {"user_registered", "login_succeeded", "personal_data_exported"} <= actions
    # Credentials are not personal data to hand out: no hash, no secret, no token.
    assert "$2b$" not in response.text
    assert user.refresh_token not in response.text
    assert "personal_data_exported" in await _actions(app, user.id)
