"""Reports read from a real Orthanc: a highdicom SR, and an Encapsulated PDF, stored into the
study as a reading centre would; the gateway finds them with QIDO-RS and reads them with WADO-RS.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import update

from relaypacs.config import Settings
from relaypacs.reports.models import Report
from relaypacs.reports.tasks import sync_due_reports
from relaypacs.users.models import Role
from tests.reports.documents import encapsulated_pdf, structured_report, uids_of
from tests.reports.factories import API, DeliveredStudy, deliver
from tests.reports.test_reports import pdf_text
from tests.support.accounts import SignedIn, assert_problem, new_client, running_app, sign_in
from tests.support.jobs import job_context
from tests.support.orthanc import OrthancServer, orthanc_available

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def orthanc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OrthancServer]:
    if not orthanc_available():
        pytest.skip("apt orthanc + orthanc-dicomweb are not installed (make system-deps)")
    server = OrthancServer(tmp_path_factory.mktemp("orthanc-reports"))
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
async def pacs_app(settings: Settings, orthanc: OrthancServer) -> AsyncIterator[FastAPI]:
    configured = settings.model_copy(
        update={
            "pacs_url": orthanc.url,
            "pacs_kind": "orthanc",
            "pacs_name": "orthanc",
            "pacs_username": orthanc.username,
            "pacs_password": orthanc.password,
        }
    )
    async with running_app(configured) as app:
        yield app


@pytest.fixture
async def http(pacs_app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with new_client(pacs_app) as client:
        yield client


def store_in_orthanc(orthanc: OrthancServer, data: bytes) -> None:
    """Orthanc's REST API takes one Part 10 file per POST /instances (TESTBED.md)."""
    response = httpx.post(
        f"{orthanc.url}/instances",
        content=data,
        auth=orthanc.auth,
        headers={"Content-Type": "application/dicom"},
        timeout=30,
    )
    assert response.status_code == 200, response.text


async def delivered_to_orthanc(
    http: httpx.AsyncClient, app: FastAPI, orthanc: OrthancServer, owner: SignedIn
) -> DeliveredStudy:
    delivered = await deliver(http, app, owner, images=2)
    for image in delivered.images:
        store_in_orthanc(orthanc, image)
    return delivered


async def test_an_sr_stored_in_orthanc_makes_the_report_ready_with_its_text(
    http: httpx.AsyncClient, pacs_app: FastAPI, orthanc: OrthancServer
) -> None:
    owner = await sign_in(http, pacs_app)
    delivered = await delivered_to_orthanc(http, pacs_app, orthanc, owner)
    url = f"{API}/reports/{delivered.report_id}"

    # Orthanc holds the images only: the uploaded series are not a report.
    nothing = await http.post(f"{url}/sync", headers=owner.headers)
    assert nothing.status_code == 200, nothing.text
    assert nothing.json()["status"] == "assigned"

    sr = structured_report(
        delivered.images[0],
        findings="No acute intracranial haemorrhage. Ventricles normal in size.",
        impression="Normal CT head.",
        radiologist="Lovelace^Ada^^Dr",
    )
    store_in_orthanc(orthanc, sr)
    assert orthanc.study_instance_count(delivered.study_uid) == 3

    synced = await http.post(f"{url}/sync", headers=owner.headers)
    report = synced.json()
    assert (report["status"], report["source"], report["radiologist"]) == (
        "ready",
        "structured_report",
        "Dr Ada Lovelace",
    )
    assert "Ventricles normal in size." in report["text"]
    assert report["has_pacs_pdf"] is False

    pdf = await http.get(f"{url}/pdf", headers=owner.headers)
    assert pdf.status_code == 200
    assert pdf.content.startswith(b"%PDF")
    text = pdf_text(pdf.content)
    assert "No acute intracranial haemorrhage." in text
    assert "Normal CT head." in text
    assert "Dr Ada Lovelace" in text

    notifications = await http.get(f"{API}/notifications", headers=owner.headers)
    assert [n["type"] for n in notifications.json()["items"]] == [
        "report_ready",
        "upload_complete",
    ]
    async with pacs_app.state.sessionmaker() as session:
        stored = await session.get(Report, delivered.report_id)
        assert stored is not None
        assert stored.pacs_sop_instance_uid == uids_of(sr)[2]
        assert stored.pacs_destination == "orthanc"


async def test_the_periodic_sync_finds_reports_that_arrived_meanwhile(
    http: httpx.AsyncClient, pacs_app: FastAPI, orthanc: OrthancServer
) -> None:
    owner = await sign_in(http, pacs_app)
    waiting = await delivered_to_orthanc(http, pacs_app, orthanc, owner)
    reported = await delivered_to_orthanc(http, pacs_app, orthanc, owner)
    store_in_orthanc(
        orthanc,
        structured_report(
            reported.images[0],
            findings="Fracture of the left radius.",
            impression="Fracture.",
            radiologist="Curie^Marie",
        ),
    )
    await sync_due_reports(job_context(pacs_app, "reports.sync"), {})

    ready = (await http.get(f"{API}/reports/{reported.report_id}", headers=owner.headers)).json()
    assert ready["status"] == "ready"
    assert ready["radiologist"] == "Marie Curie"
    still = (await http.get(f"{API}/reports/{waiting.report_id}", headers=owner.headers)).json()
    assert still["status"] == "assigned"
    assert still["last_synced_at"]
    async with pacs_app.state.sessionmaker() as session:
        report = await session.get(Report, waiting.report_id)
        assert report is not None
        assert report.next_sync_at is not None
        gap = (report.next_sync_at - report.last_synced_at).total_seconds()  # type: ignore[operator]
        assert gap == pacs_app.state.resources.settings.report_sync_seconds


async def test_the_pacs_pdf_is_served_as_the_pacs_holds_it(
    http: httpx.AsyncClient, pacs_app: FastAPI, orthanc: OrthancServer, tmp_path: Path
) -> None:
    owner = await sign_in(http, pacs_app)
    radiologist = await sign_in(http, pacs_app, role=Role.radiologist)
    delivered = await delivered_to_orthanc(http, pacs_app, orthanc, owner)
    url = f"{API}/reports/{delivered.report_id}"
    # A PDF as a reporting system writes it (here: the one RelayPACS makes for another study).
    other = await deliver(http, pacs_app, owner)
    await http.patch(
        f"{API}/reports/{other.report_id}",
        json={"status": "ready", "text": "Made by the reading centre's own system."},
        headers=radiologist.headers,
    )
    pacs_pdf = await http.get(f"{API}/reports/{other.report_id}/pdf", headers=owner.headers)
    store_in_orthanc(orthanc, encapsulated_pdf(delivered.study_uid, pacs_pdf.content))

    synced = (await http.post(f"{url}/sync", headers=owner.headers)).json()
    assert (synced["status"], synced["source"], synced["has_pacs_pdf"]) == (
        "ready",
        "encapsulated_pdf",
        True,
    )
    served = await http.get(f"{url}/pdf", headers=owner.headers)
    assert served.status_code == 200
    assert served.content == pacs_pdf.content


async def test_an_unreachable_pacs_is_a_503_and_changes_nothing(
    http: httpx.AsyncClient, settings: Settings
) -> None:
    dead = settings.model_copy(
        update={"pacs_url": "http://127.0.0.1:9", "pacs_kind": "orthanc", "pacs_name": "down"}
    )
    async with running_app(dead) as app, new_client(app) as client:
        owner = await sign_in(client, app)
        delivered = await deliver(client, app, owner)
        # Not due for the once-a-minute look-up from now on: it records attempts of its own when
        # a minute turns during the test (seen in CI). Only the request is under test.
        async with app.state.sessionmaker() as session:
            await session.execute(
                update(Report).where(Report.id == delivered.report_id).values(next_sync_at=None)
            )
            await session.commit()
        url = f"{API}/reports/{delivered.report_id}"
        before = (await client.get(url, headers=owner.headers)).json()
        response = await client.post(f"{url}/sync", headers=owner.headers)
        assert_problem(response, 503, "pacs_unavailable")
        report = (await client.get(url, headers=owner.headers)).json()
        assert report["status"] == "assigned"
        assert report == before
