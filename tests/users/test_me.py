"""The signed-in user's own account: profile, preferences and the personal-data export."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select

from relaypacs.app import create_app
from relaypacs.audit.models import AuditEvent
from relaypacs.logging import configure_logging
from relaypacs.users.models import Role
from tests.conftest import make_settings
from tests.support.accounts import SignedIn, assert_problem, new_client, sign_in

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


async def _full_name_events(app: FastAPI, user_id: uuid.UUID) -> list[AuditEvent]:
    async with app.state.sessionmaker() as session:
        rows = await session.scalars(
            select(AuditEvent)
            .where(AuditEvent.action == "full_name_changed", AuditEvent.target_id == str(user_id))
            .order_by(AuditEvent.occurred_at)
        )
        return list(rows)


async def _full_name(client: httpx.AsyncClient, user: SignedIn) -> str | None:
    name: str | None = (await client.get(ME, headers=user.headers)).json()["full_name"]
    return name


async def test_full_name_is_trimmed_and_shown_wherever_the_profile_is(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    user = await sign_in(client, app)
    assert await _full_name(client, user) is None
    response = await client.patch(
        ME, json={"full_name": "  Jane  Q. Doe \u00a0"}, headers=user.headers
    )
    assert response.status_code == 200, response.text
    assert response.json()["full_name"] == "Jane  Q. Doe"
    assert await _full_name(client, user) == "Jane  Q. Doe"
    # The PWA reads who signed in from /auth/me.
    assert (await client.get("/api/v1/auth/me", headers=user.headers)).json()[
        "full_name"
    ] == "Jane  Q. Doe"


async def test_an_empty_full_name_removes_it_and_an_omitted_one_keeps_it(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    user = await sign_in(client, app)
    await client.patch(ME, json={"full_name": "Jane Doe"}, headers=user.headers)
    for untouched in ({"email": f"other.{user.email}"}, {"full_name": None}, {}):
        response = await client.patch(ME, json=untouched, headers=user.headers)
        assert response.status_code == 200, response.text
        assert response.json()["full_name"] == "Jane Doe", untouched
    for empty in ("", "   "):
        await client.patch(ME, json={"full_name": "Jane Doe"}, headers=user.headers)
        response = await client.patch(ME, json={"full_name": empty}, headers=user.headers)
        assert response.status_code == 200, response.text
        assert response.json()["full_name"] is None
        assert await _full_name(client, user) is None


async def test_full_name_is_at_most_200_characters_after_trimming(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    user = await sign_in(client, app)
    # Characters, not bytes: 200 two-byte letters fit (PostgreSQL's varchar counts the same).
    longest = "é" * 200
    response = await client.patch(ME, json={"full_name": f"  {longest}  "}, headers=user.headers)
    assert response.status_code == 200, response.text
    assert await _full_name(client, user) == longest
    body = assert_problem(
        await client.patch(ME, json={"full_name": "x" * 201}, headers=user.headers),
        422,
        "validation_error",
    )
    assert body["detail"].startswith("full_name:"), body
    assert await _full_name(client, user) == longest


@pytest.mark.parametrize(
    "name",
    [
        "Jane\x00Doe",  # PostgreSQL cannot store NUL in text
        "Jane\nDoe",
        "Jane Doe\n",  # refused, not trimmed away
        "\tJane Doe",
        "Jane\x7fDoe",
        "Jane\x85Doe",  # C1 control
        "Jane \ud800Doe",  # a lone surrogate cannot be stored as UTF-8
    ],
)
async def test_control_characters_in_the_full_name_are_refused(
    client: httpx.AsyncClient, app: FastAPI, name: str
) -> None:
    user = await sign_in(client, app)
    await client.patch(ME, json={"full_name": "Jane Doe"}, headers=user.headers)
    # Escaped JSON, as a client would send it (a lone surrogate has no UTF-8 form of its own).
    body = assert_problem(
        await client.patch(
            ME,
            content=json.dumps({"full_name": name}),
            headers={**user.headers, "Content-Type": "application/json"},
        ),
        422,
        "validation_error",
    )
    assert body["detail"].startswith("full_name: must not contain"), body
    assert await _full_name(client, user) == "Jane Doe"
    assert len(await _full_name_events(app, user.id)) == 1


async def test_a_full_name_that_is_not_text_is_refused(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    user = await sign_in(client, app)
    for value in (42, ["Jane"], {"first": "Jane"}, True):
        response = await client.patch(ME, json={"full_name": value}, headers=user.headers)
        assert_problem(response, 422, "validation_error")
    assert await _full_name(client, user) is None


async def test_full_name_changes_are_audited_without_the_name(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    user = await sign_in(client, app)
    for name in ("Jane Doe", " Jane Doe ", "Jane Roe", ""):
        response = await client.patch(ME, json={"full_name": name}, headers=user.headers)
        assert response.status_code == 200, response.text
    events = await _full_name_events(app, user.id)
    # Set, (the same again: no change, no event), changed, removed.
    assert len(events) == 3
    for event in events:
        assert event.actor_id == user.id
        assert event.target_type == "user"
        assert event.details == {}
    export = (await client.get(EXPORT, headers=user.headers)).json()
    for event in export["audit_events"]:
        assert "Jane" not in str(event), event


async def test_a_refused_profile_change_leaves_the_full_name_alone(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    user = await sign_in(client, app)
    other = await sign_in(client, app)
    refused = (
        ({"full_name": "Jane Doe", "role": "admin"}, 403, "role_change_forbidden"),
        ({"full_name": "Jane Doe", "email": other.email}, 409, "email_taken"),
        ({"full_name": "Jane Doe", "email": "not-an-address"}, 422, "validation_error"),
    )
    for body, status, code in refused:
        assert_problem(await client.patch(ME, json=body, headers=user.headers), status, code)
    assert await _full_name(client, user) is None
    assert await _full_name_events(app, user.id) == []


async def test_export_includes_the_full_name(client: httpx.AsyncClient, app: FastAPI) -> None:
    user = await sign_in(client, app)
    await client.patch(ME, json={"full_name": "Jane Doe"}, headers=user.headers)
    export = (await client.get(EXPORT, headers=user.headers)).json()
    assert export["user"]["full_name"] == "Jane Doe"


async def test_openapi_documents_the_full_name(client: httpx.AsyncClient) -> None:
    schemas = (await client.get("/openapi.json")).json()["components"]["schemas"]
    (given,) = [
        s
        for s in schemas["UserUpdate"]["properties"]["full_name"]["anyOf"]
        if s != {"type": "null"}
    ]
    assert given["type"] == "string"
    assert given["maxLength"] == 200
    assert "\\x00-\\x1f" in given["pattern"]
    shown = schemas["UserOut"]["properties"]["full_name"]
    assert {"type": "null"} in shown["anyOf"]
    assert "full_name" in schemas["UserOut"]["required"]


async def test_the_full_name_never_reaches_the_log(
    database_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Personal data: not in request lines, error lines or (at DEBUG) the drivers' SQL."""
    marker = "Quintessa" + uuid.uuid4().hex[:8]
    app = create_app(make_settings(database_url, tmp_path, log_level="DEBUG"))
    try:
        async with app.router.lifespan_context(app), new_client(app) as http:
            user = await sign_in(http, app)
            admin = await sign_in(http, app, role=Role.admin)
            saved = await http.patch(ME, json={"full_name": marker}, headers=user.headers)
            assert saved.status_code == 200
            refused = await http.patch(ME, json={"full_name": marker + "\n"}, headers=user.headers)
            assert refused.status_code == 422
            assert (await http.get(ME, headers=user.headers)).json()["full_name"] == marker
            assert (await http.get(EXPORT, headers=user.headers)).status_code == 200
            found = await http.get(
                "/api/v1/admin/users", params={"q": marker}, headers=admin.headers
            )
            assert found.json()["total"] == 1
        output = capsys.readouterr().out
        assert '"event": "request"' in output  # the request lines are there
        assert marker not in output
        assert marker.lower() not in output
    finally:
        configure_logging("WARNING")  # as the other tests' apps have it


async def test_the_export_does_not_hand_out_who_else_acted_on_the_account_or_from_where(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    admin = await sign_in(client, app, role=Role.admin)
    user = await sign_in(client, app)
    changed = await client.patch(
        f"/api/v1/admin/users/{user.id}",
        json={"role": "radiologist"},
        headers={**admin.headers, "User-Agent": "AdminBrowser/1.0"},
    )
    assert changed.status_code == 200
    export = (await client.get(EXPORT, headers=user.headers)).json()
    by_admin = [e for e in export["audit_events"] if e["action"] == "role_changed"]
    assert by_admin  # the user learns that it happened and what changed ...
    assert by_admin[0]["details"] == {"from": "clinician", "to": "radiologist"}
    for event in by_admin:  # ... but not the admin's id, address or browser
        assert (event["actor_id"], event["ip_address"], event["user_agent"]) == (None, None, None)
    assert "AdminBrowser" not in json.dumps(export)
    own = [e for e in export["audit_events"] if e["actor_id"] == str(user.id)]
    assert own  # the user's own sign-ins keep their details
