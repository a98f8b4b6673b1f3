"""POST /uploads: study metadata, file list, size limit, chunk size, duplicates, rate limit."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import func, select, update

from relaypacs.uploads.models import Upload
from tests.support import uploads
from tests.support.accounts import sign_in

URL = "/api/v1/uploads"


async def _count_uploads(app: FastAPI) -> int:
    async with app.state.sessionmaker() as session:
        return int((await session.execute(select(func.count()).select_from(Upload))).scalar_one())


def _request(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "study": uploads.study(),
        "files": [{"name": "IM0001.dcm", "size": 1000}],
    }
    body.update(overrides)
    return body


async def test_start_returns_token_chunk_plan_and_expiry(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    user = await sign_in(client, app)
    response = await client.post(
        URL,
        json=_request(
            files=[{"name": "a.dcm", "size": 3 * 1024 * 1024 + 1}, {"name": "b.dcm", "size": 5}]
        ),
        headers=user.headers,
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["chunk_size"] == 1024 * 1024  # the user's default preference
    assert [f["chunk_count"] for f in body["files"]] == [4, 1]
    assert len(body["upload_token"]) >= 40
    expires = datetime.fromisoformat(body["expires_at"])
    assert timedelta(hours=23, minutes=59) < expires - datetime.now(UTC) <= timedelta(hours=24)
    assert response.headers["location"].endswith(body["upload_id"])
    async with app.state.sessionmaker() as session:
        stored = await session.get(Upload, __import__("uuid").UUID(body["upload_id"]))
        assert stored is not None
        assert body["upload_token"] not in stored.token_hash  # only a hash is kept


async def test_service_level_defaults_to_the_users_preference(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    user = await sign_in(client, app)
    response = await client.put(
        "/api/v1/users/me/preferences",
        json={
            "default_service_level": "stat",
            "chunk_size": 2 * 1024 * 1024,
            "duplicate_warnings": True,
        },
        headers=user.headers,
    )
    assert response.status_code == 200, response.text
    study = uploads.study()
    del study["service_level"]
    created = await client.post(URL, json=_request(study=study), headers=user.headers)
    assert created.status_code == 201, created.text
    assert created.json()["chunk_size"] == 2 * 1024 * 1024
    status = await client.get(f"{URL}/{created.json()['upload_id']}", headers=user.headers)
    assert status.json()["study"]["service_level"] == "stat"


@pytest.mark.parametrize(
    ("change", "where"),
    [
        ({"study": {**uploads.study(), "patient_name": ""}}, "patient_name"),
        ({"study": {**uploads.study(), "patient_name": "A\x00B"}}, "patient_name"),
        ({"study": {**uploads.study(), "study_date": "2024-02-30"}}, "study_date"),
        ({"study": {**uploads.study(), "study_date": "yesterday"}}, "study_date"),
        (
            {
                "study": {
                    **uploads.study(),
                    "study_date": (datetime.now(UTC).date() + timedelta(days=3)).isoformat(),
                }
            },
            "study_date",
        ),
        ({"study": {**uploads.study(), "modality": "XYZ"}}, "modality"),
        ({"study": {**uploads.study(), "service_level": "whenever"}}, "service_level"),
        ({"files": []}, "files"),
        ({"files": [{"name": "a.dcm", "size": 0}]}, "size"),
        ({"files": [{"name": "a.dcm", "size": -5}]}, "size"),
        ({"files": [{"name": "../../etc/passwd", "size": 5}]}, "name"),
        ({"files": [{"name": "/etc/passwd", "size": 5}]}, "name"),
        ({"files": [{"name": "C:\\x.dcm", "size": 5}]}, "name"),
        ({"files": [{"name": "", "size": 5}]}, "name"),
        ({"chunk_size": 1024}, "chunk_size"),
        ({"chunk_size": 11 * 1024 * 1024}, "chunk_size"),
        ({"unexpected": True}, "unexpected"),
        # JSON types are not guessed at: a size or a flag of the wrong type is refused.
        ({"files": [{"name": "a.dcm", "size": True}]}, "size"),
        ({"files": [{"name": "a.dcm", "size": "4096"}]}, "size"),
        ({"files": [{"name": "a.dcm", "size": 4096.0}]}, "size"),
        ({"chunk_size": "1048576"}, "chunk_size"),
        ({"force_upload": "off"}, "force_upload"),
        ({"force_upload": 1}, "force_upload"),
    ],
)
async def test_bad_study_or_file_list_is_refused_and_nothing_is_created(
    client: httpx.AsyncClient, app: FastAPI, change: dict[str, Any], where: str
) -> None:
    user = await sign_in(client, app)
    before = await _count_uploads(app)
    response = await client.post(URL, json=_request(**change), headers=user.headers)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["code"] == "validation_error"
    assert any(where in [str(p) for p in error["loc"]] for error in body["errors"]), body
    assert await _count_uploads(app) == before


async def test_malformed_json_is_a_problem(client: httpx.AsyncClient, app: FastAPI) -> None:
    user = await sign_in(client, app)
    response = await client.post(
        URL,
        content=b'{"study": {',
        headers={**user.headers, "Content-Type": "application/json"},
    )
    assert response.status_code == 422
    assert response.json()["code"] == "validation_error"


async def test_total_over_the_limit_is_413_upload_too_large(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    user = await sign_in(client, app)
    before = await _count_uploads(app)
    limit = app.state.settings.max_upload_bytes
    response = await client.post(
        URL,
        json=_request(files=[{"name": "a", "size": limit}, {"name": "b", "size": 1}]),
        headers=user.headers,
    )
    assert response.status_code == 413
    assert response.json()["code"] == "upload_too_large"
    assert await _count_uploads(app) == before


async def test_starting_needs_a_signed_in_user(client: httpx.AsyncClient) -> None:
    response = await client.post(URL, json=_request())
    assert response.status_code == 401


async def test_same_study_within_30_days_is_409_duplicate_unless_forced(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    user = await sign_in(client, app)
    study = uploads.study(patient_name="Doe^Jane", modality="MR")
    first = await client.post(URL, json=_request(study=study), headers=user.headers)
    assert first.status_code == 201
    # Case, separators and spacing do not make a different patient.
    again = {**study, "patient_name": "  DOE  jane "}
    duplicate = await client.post(URL, json=_request(study=again), headers=user.headers)
    assert duplicate.status_code == 409
    body = duplicate.json()
    assert body["code"] == "duplicate_study"
    assert body["duplicate_of"] == first.json()["upload_id"]

    forced = await client.post(
        URL, json=_request(study=again, force_upload=True), headers=user.headers
    )
    assert forced.status_code == 201
    from relaypacs.audit.models import AuditEvent

    async with app.state.sessionmaker() as session:
        actions = (
            await session.scalars(
                select(AuditEvent.action).where(AuditEvent.target_id == forced.json()["upload_id"])
            )
        ).all()
    assert "upload.duplicate_forced" in actions


async def test_duplicate_rule_ignores_other_users_and_other_dates(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    alice = await sign_in(client, app)
    bob = await sign_in(client, app)
    study = uploads.study()
    assert (
        await client.post(URL, json=_request(study=study), headers=alice.headers)
    ).status_code == 201
    # Bob never learns that Alice uploaded the same study.
    assert (
        await client.post(URL, json=_request(study=study), headers=bob.headers)
    ).status_code == 201
    other_day = {**study, "study_date": "2024-05-18"}
    response = await client.post(URL, json=_request(study=other_day), headers=alice.headers)
    assert response.status_code == 201


async def test_a_session_past_its_expiry_is_no_earlier_copy_even_before_the_sweep_marks_it(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    user = await sign_in(client, app)
    study = uploads.study(patient_name="Late^Sam", modality="CT")
    first = await client.post(URL, json=_request(study=study), headers=user.headers)
    assert first.status_code == 201
    # The 24 h passed; the expiry sweep (every 10 min) has not marked the session yet, but
    # every request to it already answers upload_expired, so the client starts again.
    async with app.state.sessionmaker() as session:
        await session.execute(
            update(Upload)
            .where(Upload.id == uuid.UUID(first.json()["upload_id"]))
            .values(expires_at=datetime.now(UTC) - timedelta(seconds=1))
        )
        await session.commit()
    again = await client.post(URL, json=_request(study=study), headers=user.headers)
    assert again.status_code == 201, again.text


async def test_more_than_20_starts_a_minute_is_429(client: httpx.AsyncClient, app: FastAPI) -> None:
    user = await sign_in(client, app)
    statuses = []
    for _ in range(21):
        response = await client.post(
            URL, json=_request(study=uploads.study()), headers=user.headers
        )
        statuses.append(response.status_code)
    assert statuses[:20] == [201] * 20
    assert statuses[20] == 429
    assert int(response.headers["retry-after"]) >= 1
    assert response.json()["code"] == "rate_limited"
