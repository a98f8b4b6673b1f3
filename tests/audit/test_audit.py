"""The audit log: written for security events, append-only, filtered reads, safe CSV export."""

from __future__ import annotations

import csv
import io
import uuid
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import delete, update
from sqlalchemy.exc import DBAPIError

from relaypacs.audit.models import AuditEvent
from relaypacs.audit.service import record_audit
from relaypacs.users.models import Role
from tests.support.accounts import assert_problem, new_client, sign_in

AUDIT = "/api/v1/admin/audit"
EXPORT = "/api/v1/admin/audit/export.csv"


async def test_only_admins_read_the_audit_log(client: httpx.AsyncClient, app: FastAPI) -> None:
    user = await sign_in(client, app, role=Role.radiologist)
    assert_problem(await client.get(AUDIT, headers=user.headers), 403, "insufficient_role")
    assert_problem(await client.get(EXPORT, headers=user.headers), 403, "insufficient_role")
    assert_problem(await client.get(AUDIT), 401, "not_authenticated")


async def test_security_events_are_recorded_and_filtered_by_actor_and_action(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    admin = await sign_in(client, app, role=Role.admin)
    user = await sign_in(client, app)
    await client.post("/api/v1/auth/logout", headers=user.headers)
    response = await client.get(AUDIT, params={"actor_id": str(user.id)}, headers=admin.headers)
    assert response.status_code == 200
    actions = [event["action"] for event in response.json()["items"]]
    # Newest first.
    assert actions == ["logout", "login_succeeded", "user_registered"]
    only_logouts = await client.get(
        AUDIT, params={"actor_id": str(user.id), "action": "logout"}, headers=admin.headers
    )
    assert only_logouts.json()["total"] == 1
    event = only_logouts.json()["items"][0]
    assert event["ip_address"].startswith("127.1.")
    assert event["request_id"]


async def test_audit_log_filters_by_time(client: httpx.AsyncClient, app: FastAPI) -> None:
    admin = await sign_in(client, app, role=Role.admin)
    user = await sign_in(client, app)
    now = datetime.now(UTC)
    since = (now - timedelta(minutes=5)).isoformat()
    until = (now + timedelta(minutes=5)).isoformat()
    window = await client.get(
        AUDIT,
        params={"actor_id": str(user.id), "since": since, "until": until},
        headers=admin.headers,
    )
    assert window.json()["total"] == 2
    later = await client.get(
        AUDIT, params={"actor_id": str(user.id), "since": until}, headers=admin.headers
    )
    assert later.json()["total"] == 0


async def test_reversed_time_range_is_a_clear_error(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    admin = await sign_in(client, app, role=Role.admin)
    params = {"since": "2024-05-02T00:00:00Z", "until": "2024-05-01T00:00:00Z"}
    assert_problem(
        await client.get(AUDIT, params=params, headers=admin.headers), 400, "invalid_time_range"
    )


@pytest.mark.parametrize("since", ["2024-05-01T00:00:00", "0", "1714521600", "yesterday"])
async def test_times_must_be_iso_8601_with_a_zone(
    client: httpx.AsyncClient, app: FastAPI, since: str
) -> None:
    admin = await sign_in(client, app, role=Role.admin)
    assert_problem(
        await client.get(AUDIT, params={"since": since}, headers=admin.headers),
        422,
        "validation_error",
    )


async def test_csv_export_is_safe_from_formula_injection(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    admin = await sign_in(client, app, role=Role.admin)
    user = await sign_in(client, app)
    hostile_agent = '=HYPERLINK("http://evil.example","click")'
    async with new_client(app) as http:
        await http.post(
            "/api/v1/auth/login",
            json={"username": user.username, "password": user.password},
            headers={"User-Agent": hostile_agent},
        )
    response = await client.get(EXPORT, params={"actor_id": str(user.id)}, headers=admin.headers)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    assert "attachment" in response.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(response.text)))
    agents = [row["user_agent"] for row in rows]
    assert "'" + hostile_agent in agents
    assert hostile_agent not in agents
    for row in rows:
        for value in row.values():
            assert not value.startswith(("=", "+", "-", "@")), value


async def test_audit_export_is_itself_audited(client: httpx.AsyncClient, app: FastAPI) -> None:
    admin = await sign_in(client, app, role=Role.admin)
    await client.get(EXPORT, params={"action": "nothing"}, headers=admin.headers)
    response = await client.get(
        AUDIT, params={"actor_id": str(admin.id), "action": "audit_exported"}, headers=admin.headers
    )
    assert response.json()["total"] == 1


async def test_reading_the_audit_log_is_itself_audited(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    admin = await sign_in(client, app, role=Role.admin)
    await client.get(AUDIT, params={"action": "login_failed"}, headers=admin.headers)
    response = await client.get(
        AUDIT, params={"actor_id": str(admin.id), "action": "audit_viewed"}, headers=admin.headers
    )
    items = response.json()["items"]
    # The first read is in the log by the time of the second (which is there too, once read).
    assert [e["details"]["filters"] for e in items][-1] == {"action": "login_failed"}


async def test_audit_rows_cannot_be_changed_or_deleted(app: FastAPI) -> None:
    async with app.state.sessionmaker() as session:
        await record_audit(session, "tamper_probe", request=None, actor_id=uuid.uuid4())
        await session.commit()
    for statement in (
        update(AuditEvent).where(AuditEvent.action == "tamper_probe").values(action="x"),
        delete(AuditEvent).where(AuditEvent.action == "tamper_probe"),
    ):
        async with app.state.sessionmaker() as session:
            with pytest.raises(DBAPIError, match="append-only"):
                await session.execute(statement)


async def test_secrets_never_enter_the_audit_log(app: FastAPI) -> None:
    async with app.state.sessionmaker() as session:
        with pytest.raises(ValueError, match="secrets"):
            await record_audit(
                session, "oops", request=None, actor_id=None, details={"refresh_token": "x"}
            )


async def test_csv_export_carries_who_what_whom_where_and_when(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    admin = await sign_in(client, app, role=Role.admin)
    user = await sign_in(client, app)
    request_id = "csv-" + uuid.uuid4().hex
    async with new_client(app) as http:
        await http.post(
            "/api/v1/auth/logout",
            headers={**user.headers, "User-Agent": "CsvProbe/2.0", "X-Request-ID": request_id},
        )
    response = await client.get(
        EXPORT, params={"actor_id": str(user.id), "action": "logout"}, headers=admin.headers
    )
    reader = csv.DictReader(io.StringIO(response.text))
    assert reader.fieldnames == [
        "occurred_at",
        "action",
        "actor_id",
        "target_type",
        "target_id",
        "ip_address",
        "user_agent",
        "request_id",
        "details",
    ]
    (row,) = list(reader)
    assert row["action"] == "logout"
    assert row["actor_id"] == str(user.id)
    assert (row["target_type"], row["target_id"]) == ("user", str(user.id))
    assert row["ip_address"].startswith("127.3.")
    assert row["user_agent"] == "CsvProbe/2.0"
    assert row["request_id"] == request_id
    occurred = datetime.fromisoformat(row["occurred_at"])
    assert abs(occurred - datetime.now(UTC)) < timedelta(minutes=5)


async def test_a_listing_of_uploads_records_which_uploads_were_seen(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    from tests.support import uploads
    from tests.support.dicom_studies import instance

    owner = await sign_in(client, app)
    admin = await sign_in(client, app, role=Role.admin)
    started = await uploads.start(client, owner.headers, [instance()])
    assert (await client.get("/api/v1/uploads", headers=owner.headers)).status_code == 200
    response = await client.get(
        AUDIT, params={"actor_id": str(owner.id), "action": "upload.listed"}, headers=admin.headers
    )
    assert [e["details"]["ids"] for e in response.json()["items"]] == [[started.id]]
