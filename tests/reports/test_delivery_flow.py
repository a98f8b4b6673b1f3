"""The whole chain on the embedded defaults: an upload is delivered to the local archive by the
real jobs, its owner watches the states arrive live, and the report and notifications follow."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI
from pydicom.uid import generate_uid

from relaypacs.users.models import Role
from tests.support import uploads
from tests.support.accounts import sign_in
from tests.support.dicom_studies import instance
from tests.support.live_events import API, open_stream, serve_app, stream_ticket


@pytest.fixture(scope="module")
async def base_url(app: FastAPI) -> AsyncIterator[str]:
    async with serve_app(app) as url:
        yield url


async def test_a_stat_study_is_delivered_live_and_its_report_and_notifications_follow(
    client: httpx.AsyncClient, app: FastAPI, base_url: str
) -> None:
    owner = await sign_in(client, app)
    radiologist = await sign_in(client, app, role=Role.radiologist)
    study_uid, series_uid = generate_uid(), generate_uid()
    contents = [
        instance(study_uid=study_uid, series_uid=series_uid, instance_number=n) for n in (1, 2)
    ]
    async with open_stream(base_url, ticket=await stream_ticket(client, owner.headers)) as events:
        await events.next()
        session = await uploads.start(
            client, owner.headers, contents, service_level="stat", patient_name="DOE^JANE"
        )
        await uploads.send_all(client, session)
        completed = await client.post(
            f"{API}/uploads/{session.id}/complete", headers=session.token_headers
        )
        assert completed.status_code == 202, completed.text

        states: list[str] = []
        while not states or states[-1] not in ("delivered", "failed", "rejected"):
            event = await events.until("upload_state", wait=60, upload_id=session.id)
            states.append(event.data["state"])
        assert states[-1] == "delivered", states
        # "validated → forwarding → delivered" arrives without polling.
        assert states.index("validated") < states.index("forwarding") < states.index("delivered")
        assert "receiving" in states
        assert "assembling" in states
        notification = await events.until("notification", wait=30)
        assert notification.data["type"] == "upload_complete"
        assert notification.data["upload_id"] == session.id
        assert "DOE" not in notification.data["body"]

    reports = (await client.get(f"{API}/reports", headers=owner.headers)).json()["items"]
    assert [r["upload_id"] for r in reports] == [session.id]
    assert reports[0]["status"] == "assigned"
    assert reports[0]["study"]["study_instance_uid"] == study_uid
    arrived = (await client.get(f"{API}/notifications", headers=radiologist.headers)).json()
    assert [(n["type"], n["upload_id"]) for n in arrived["items"]] == [
        ("stat_study_arrived", session.id)
    ]
