"""Account administration: only admins; list, create, change role, disable; all audited."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import httpx
from fastapi import FastAPI
from sqlalchemy import select

from relaypacs.audit.models import AuditEvent
from relaypacs.users.models import Role
from relaypacs.users.repository import UserRepository
from tests.conftest import make_settings
from tests.support.accounts import assert_problem, new_client, running_app, sign_in
from tests.support.databases import throwaway_database

USERS = "/api/v1/admin/users"


async def test_only_admins_reach_account_administration(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    for role in (Role.clinician, Role.radiographer, Role.radiologist):
        user = await sign_in(client, app, role=role)
        assert_problem(await client.get(USERS, headers=user.headers), 403, "insufficient_role")
        assert_problem(
            await client.patch(f"{USERS}/{user.id}", json={"role": "admin"}, headers=user.headers),
            403,
            "insufficient_role",
        )
    assert_problem(await client.get(USERS), 401, "not_authenticated")


async def test_admin_lists_and_filters_users(client: httpx.AsyncClient, app: FastAPI) -> None:
    admin = await sign_in(client, app, role=Role.admin)
    radiologist = await sign_in(client, app, role=Role.radiologist)
    response = await client.get(
        USERS, params={"role": "radiologist", "q": radiologist.username}, headers=admin.headers
    )
    assert response.status_code == 200
    page = response.json()
    assert page["total"] == 1
    assert page["items"][0]["id"] == str(radiologist.id)
    assert "password_hash" not in page["items"][0]
    paged = (await client.get(USERS, params={"limit": 1}, headers=admin.headers)).json()
    assert len(paged["items"]) == 1
    assert paged["total"] >= 2


async def test_admin_search_takes_like_wildcards_literally(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    """Usernames may hold ``_``: searching for one must not match every character there."""
    admin = await sign_in(client, app, role=Role.admin)
    stem = uuid.uuid4().hex[:8]
    underscored = await sign_in(client, app, username=f"w{stem}_x")
    await sign_in(client, app, username=f"w{stem}ax")
    # % too is only itself.
    for query, expected in ((f"{stem}_x", [underscored.id]), (f"{stem}%", [])):
        page = (await client.get(USERS, params={"q": query}, headers=admin.headers)).json()
        assert [uuid.UUID(item["id"]) for item in page["items"]] == expected, query


async def test_admin_sees_full_names_and_finds_users_by_them(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    admin = await sign_in(client, app, role=Role.admin)
    user = await sign_in(client, app)
    surname = f"Lovelace{uuid.uuid4().hex[:8]}"
    named = await client.patch(
        "/api/v1/users/me", json={"full_name": f"Ada {surname}"}, headers=user.headers
    )
    assert named.status_code == 200
    # Any case: the search folds the name as it folds usernames and addresses.
    page = (await client.get(USERS, params={"q": surname.lower()}, headers=admin.headers)).json()
    assert [(item["id"], item["full_name"]) for item in page["items"]] == [
        (str(user.id), f"Ada {surname}")
    ]
    one = (await client.get(f"{USERS}/{user.id}", headers=admin.headers)).json()
    assert one["full_name"] == f"Ada {surname}"
    # Users without a name are listed all the same.
    unnamed = await client.get(USERS, params={"q": admin.username}, headers=admin.headers)
    assert [item["full_name"] for item in unnamed.json()["items"]] == [None]


async def test_admin_creates_an_account_of_any_role(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    admin = await sign_in(client, app, role=Role.admin)
    username = "made_" + uuid.uuid4().hex[:8]
    response = await client.post(
        USERS,
        json={
            "username": username,
            "email": f"{username}@example.org",
            "password": "Initial-Secret-55",
            "role": "admin",
        },
        headers=admin.headers,
    )
    assert response.status_code == 201
    assert response.json()["role"] == "admin"
    assert response.json()["must_change_password"] is True
    weak = await client.post(
        USERS,
        json={"username": username + "x", "email": f"x{username}@example.org", "password": "weak"},
        headers=admin.headers,
    )
    assert_problem(weak, 422, "weak_password")


async def test_unknown_user_is_404(client: httpx.AsyncClient, app: FastAPI) -> None:
    admin = await sign_in(client, app, role=Role.admin)
    missing = f"{USERS}/{uuid.uuid4()}"
    assert_problem(await client.get(missing, headers=admin.headers), 404, "user_not_found")
    assert_problem(
        await client.patch(missing, json={"role": "admin"}, headers=admin.headers),
        404,
        "user_not_found",
    )


async def test_an_account_flag_of_the_wrong_json_type_is_refused(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    """``"false"`` (a string) must not be read as false: that would disable an account."""
    admin = await sign_in(client, app, role=Role.admin)
    user = await sign_in(client, app)
    for flag in ("false", 0, "no"):
        response = await client.patch(
            f"{USERS}/{user.id}", json={"is_active": flag}, headers=admin.headers
        )
        assert_problem(response, 422, "validation_error")
    assert (await client.get("/api/v1/auth/me", headers=user.headers)).status_code == 200
    made = await client.post(
        USERS,
        json={
            "username": f"strict_{uuid.uuid4().hex[:8]}",
            "email": f"strict_{uuid.uuid4().hex[:8]}@example.org",
            "password": "Initial-Secret-55",
            "must_change_password": "false",
        },
        headers=admin.headers,
    )
    assert_problem(made, 422, "validation_error")


async def test_role_changes_are_audited_with_old_and_new_role(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    admin = await sign_in(client, app, role=Role.admin)
    user = await sign_in(client, app)
    response = await client.patch(
        f"{USERS}/{user.id}", json={"role": "radiologist"}, headers=admin.headers
    )
    assert response.json()["role"] == "radiologist"
    async with app.state.sessionmaker() as session:
        event = await session.scalar(
            select(AuditEvent).where(
                AuditEvent.action == "role_changed", AuditEvent.target_id == str(user.id)
            )
        )
    assert event is not None
    assert event.actor_id == admin.id
    assert event.details == {"from": "clinician", "to": "radiologist"}


@asynccontextmanager
async def _app_without_other_admins(
    database_url: str, tmp_path: Path
) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    """A gateway on a fresh database of the same backend: the admins a test makes are all."""
    backend = "sqlite" if database_url.startswith("sqlite") else "postgresql"
    (tmp_path / "db").mkdir()
    database = throwaway_database(backend, tmp_path / "db")
    # Migrations run their own event loop: enter and leave the database from a thread.
    fresh_url = await anyio.to_thread.run_sync(database.__enter__)
    try:
        settings = make_settings(fresh_url, tmp_path / "data")
        async with running_app(settings) as fresh_app, new_client(fresh_app) as http:
            yield fresh_app, http
    finally:
        await anyio.to_thread.run_sync(database.__exit__, None, None, None)


async def test_of_two_admins_demoting_each_other_at_once_one_stays(
    database_url: str, tmp_path: Path
) -> None:
    async with _app_without_other_admins(database_url, tmp_path) as (fresh_app, http):
        admin = await sign_in(http, fresh_app, role=Role.admin)
        second = await sign_in(http, fresh_app, role=Role.admin)
        # Two admins demote each other at the same moment: one of them stays.
        answers = await asyncio.gather(
            http.patch(f"{USERS}/{second.id}", json={"role": "clinician"}, headers=admin.headers),
            http.patch(f"{USERS}/{admin.id}", json={"role": "clinician"}, headers=second.headers),
        )
        # The other is refused: "last admin" when both ran side by side (PostgreSQL), or
        # "not an admin" when it came second (SQLite's transactions take turns).
        assert sorted(a.status_code for a in answers) in ([200, 403], [200, 409]), [
            a.text for a in answers
        ]
        refused = next(a for a in answers if a.status_code != 200)
        assert refused.json()["code"] in {"last_admin", "insufficient_role"}
        async with fresh_app.state.sessionmaker() as session:
            assert await UserRepository(session).count_active_admins() == 1


async def test_an_admin_cannot_demote_or_disable_themselves(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    admin = await sign_in(client, app, role=Role.admin)
    for change in ({"role": "clinician"}, {"is_active": False}):
        response = await client.patch(f"{USERS}/{admin.id}", json=change, headers=admin.headers)
        assert_problem(response, 403, "own_account_change")
    assert (await client.get(f"{USERS}/{admin.id}", headers=admin.headers)).json()[
        "role"
    ] == "admin"


async def test_a_disabled_admin_can_be_demoted_by_the_one_active_admin(
    database_url: str, tmp_path: Path
) -> None:
    async with _app_without_other_admins(database_url, tmp_path) as (fresh_app, http):
        admin = await sign_in(http, fresh_app, role=Role.admin)
        other = await sign_in(http, fresh_app, role=Role.admin)
        disabled = await http.patch(
            f"{USERS}/{other.id}", json={"is_active": False}, headers=admin.headers
        )
        assert disabled.status_code == 200, disabled.text
        # The number of active admins does not change: no "last admin" here.
        demoted = await http.patch(
            f"{USERS}/{other.id}", json={"role": "clinician"}, headers=admin.headers
        )
        assert demoted.status_code == 200, demoted.text
