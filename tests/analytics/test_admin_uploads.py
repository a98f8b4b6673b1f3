"""The admin's view of uploads: every user's uploads with filters, and requeueing a failure."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import timedelta

import httpx
import pytest
from fastapi import FastAPI
from prometheus_client import REGISTRY
from sqlalchemy import select

from relaypacs.db.base import utcnow
from relaypacs.jobs.models import Job, JobState
from relaypacs.uploads.models import Upload, UploadEvent, UploadState
from relaypacs.users.models import Role
from tests.analytics.conftest import Dataset, insert_upload
from tests.support.accounts import SignedIn, assert_problem, new_client, sign_in

API = "/api/v1"


@pytest.fixture
async def http(analytics_app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with new_client(analytics_app) as client:
        yield client


async def _people(app: FastAPI, http: httpx.AsyncClient) -> tuple[SignedIn, SignedIn]:
    return await sign_in(http, app), await sign_in(http, app, role=Role.admin)


async def test_admins_list_every_users_uploads_with_filters(
    analytics_app: FastAPI, http: httpx.AsyncClient
) -> None:
    owner, admin = await _people(analytics_app, http)
    data = Dataset()
    me = (owner.id, owner.username)
    now = utcnow()
    failed = await insert_upload(
        analytics_app, data, owner=me, created_at=now - timedelta(hours=1), state=UploadState.failed
    )
    await insert_upload(
        analytics_app,
        data,
        owner=me,
        created_at=now - timedelta(days=3),
        modality="MR",
        seconds_to_pacs=10.0,
    )
    response = await http.get(
        f"{API}/admin/uploads", params={"user_id": str(owner.id)}, headers=admin.headers
    )
    assert response.status_code == 200, response.text
    page = response.json()
    assert page["total"] == 2
    assert page["items"][0]["upload_id"] == str(failed.upload_id)
    assert page["items"][0]["owner_username"] == owner.username
    assert "patient_name" not in page["items"][0]

    only_failed = await http.get(
        f"{API}/admin/uploads",
        params={"user_id": str(owner.id), "state": ["failed", "rejected"]},
        headers=admin.headers,
    )
    assert [u["upload_id"] for u in only_failed.json()["items"]] == [str(failed.upload_id)]
    mr = await http.get(
        f"{API}/admin/uploads",
        params={"user_id": str(owner.id), "modality": "mr"},
        headers=admin.headers,
    )
    assert [u["modality"] for u in mr.json()["items"]] == ["MR"]
    recent = await http.get(
        f"{API}/admin/uploads",
        params={
            "user_id": str(owner.id),
            "created_from": (now - timedelta(days=1)).isoformat(),
        },
        headers=admin.headers,
    )
    assert recent.json()["total"] == 1
    bad = await http.get(f"{API}/admin/uploads", params={"state": "lost"}, headers=admin.headers)
    assert_problem(bad, 422, "validation_error")
    # Each listing is a read of upload records: audited, with who read them.
    audit = await http.get(
        f"{API}/admin/audit",
        params={"actor_id": str(admin.id), "action": "upload.listed"},
        headers=admin.headers,
    )
    assert audit.json()["total"] == 4
    assert [str(failed.upload_id)] in [e["details"]["ids"] for e in audit.json()["items"]]


async def test_an_admin_requeues_a_failed_upload_and_it_waits_in_the_queue_again(
    analytics_app: FastAPI, http: httpx.AsyncClient
) -> None:
    owner, admin = await _people(analytics_app, http)
    data = Dataset()
    row = await insert_upload(
        analytics_app,
        data,
        owner=(owner.id, owner.username),
        created_at=utcnow(),
        state=UploadState.failed,
    )
    async with analytics_app.state.sessionmaker() as session:
        job = Job(
            kind="pacs.forward",
            payload={"upload_id": str(row.upload_id)},
            state=JobState.failed,
            attempts=12,
            dedupe_key=f"pacs.forward:{row.upload_id}",
            last_error="gave up after 12 attempts: STOW-RS answered HTTP 503",
            finished_at=utcnow(),
        )
        session.add(job)
        await session.commit()
        job_id = job.id

    requeued_before = REGISTRY.get_sample_value("relaypacs_uploads_requeued_total") or 0.0
    response = await http.post(
        f"{API}/admin/uploads/{row.upload_id}/requeue", headers=admin.headers
    )
    assert response.status_code == 202, response.text
    # Its "failed" was counted; the success rate takes it back (deploy/prometheus/rules.yml).
    assert REGISTRY.get_sample_value("relaypacs_uploads_requeued_total") == requeued_before + 1
    assert response.json() == {
        "upload_id": str(row.upload_id),
        "state": "queued",
        "job_id": str(job_id),
    }
    async with analytics_app.state.sessionmaker() as session:
        stored_job = await session.get(Job, job_id)
        assert stored_job is not None
        assert stored_job.state is JobState.queued
        upload = await session.get(Upload, row.upload_id)
        assert upload is not None
        assert upload.state is UploadState.queued
        timeline = (
            await session.scalars(select(UploadEvent).where(UploadEvent.upload_id == row.upload_id))
        ).all()
        assert any(e.detail == "requeued by an administrator" for e in timeline)
    audit = await http.get(
        f"{API}/admin/audit",
        params={"action": "upload.requeued", "target_id": str(row.upload_id)},
        headers=admin.headers,
    )
    assert audit.json()["total"] == 1

    again = await http.post(f"{API}/admin/uploads/{row.upload_id}/requeue", headers=admin.headers)
    assert_problem(again, 409, "upload_not_requeueable")


async def test_only_failed_uploads_can_be_requeued(
    analytics_app: FastAPI, http: httpx.AsyncClient
) -> None:
    owner, admin = await _people(analytics_app, http)
    delivered = await insert_upload(
        analytics_app,
        Dataset(),
        owner=(owner.id, owner.username),
        created_at=utcnow(),
        seconds_to_pacs=5.0,
    )
    response = await http.post(
        f"{API}/admin/uploads/{delivered.upload_id}/requeue", headers=admin.headers
    )
    assert_problem(response, 409, "upload_not_requeueable")
    response = await http.post(f"{API}/admin/uploads/{uuid.uuid4()}/requeue", headers=admin.headers)
    assert_problem(response, 404, "upload_not_found")
    async with analytics_app.state.sessionmaker() as session:
        upload = await session.get(Upload, delivered.upload_id)
        assert upload is not None
        assert upload.state is UploadState.delivered
