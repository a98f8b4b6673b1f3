"""Metrics move as they should during a real upload over HTTP (scraped and parsed).

Delivery to a real PACS (STOW, reachability, backlog, time to delivery) is in
test_delivery_metrics.py.
"""

from __future__ import annotations

import httpx
from fastapi import FastAPI

from tests.operations.test_metrics import scrape, value
from tests.support import uploads
from tests.support.accounts import sign_in
from tests.support.dicom_studies import instance

CHUNK_ROUTE = "/api/v1/uploads/{upload_id}/files/{file_id}/chunks/{index}"


async def test_a_real_upload_moves_chunk_byte_and_outcome_metrics(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    user = await sign_in(client, app)
    dicom = instance(rows=512, columns=600)  # two 512 KiB chunks
    before = await scrape(client)

    session = await uploads.start(client, user.headers, [dicom], service_level="stat")
    refused = await uploads.put(client, session, 0, 0, md5=uploads.md5_b64(b"other bytes"))
    assert refused.status_code == 400
    await uploads.send_all(client, session)
    repeated = await uploads.put(client, session, 0, 0)
    assert repeated.status_code == 200
    assert (await uploads.complete_and_wait(client, app, session))["state"] == "delivered"

    not_dicom = await uploads.start(client, user.headers, [b"plain text, not DICOM" * 100])
    await uploads.send_all(client, not_dicom)
    assert (await uploads.complete_and_wait(client, app, not_dicom))["state"] == "rejected"

    after = await scrape(client)

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    chunks = len(session.all_chunks()) + len(not_dicom.all_chunks())
    assert moved("relaypacs_uploads_started_total", service_level="stat") == 1
    assert moved("relaypacs_chunk_checksum_failures_total") == 1
    # The repeated chunk (200) is not counted twice.
    assert moved("relaypacs_chunks_received_total") == chunks
    assert moved("relaypacs_chunk_bytes_received_total") == len(dicom) + len(not_dicom.contents[0])
    assert moved("relaypacs_uploads_finished_total", state="rejected") == 1
    put_201 = {"method": "PUT", "route": CHUNK_ROUTE, "status": "201"}
    assert moved("relaypacs_http_requests_total", **put_201) == chunks
    assert (
        moved("relaypacs_http_requests_total", method="PUT", route=CHUNK_ROUTE, status="400") == 1
    )
    # Labels carry route templates only: no upload id, no patient name.
    exposition = (await client.get("/metrics")).text
    assert session.id not in exposition
    assert "TEST^PATIENT" not in exposition
