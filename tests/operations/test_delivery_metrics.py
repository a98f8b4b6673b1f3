"""Metrics after real uploads delivered to a real Orthanc, scraped and parsed: STOW latency and
instances, PACS reachability (the last STOW and each scrape's probe), the backlog per destination,
the time from upload start to delivery by service level, and uploads by final state (including
one that fails in assembly)."""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest
from pydicom.uid import generate_uid

from relaypacs.uploads.store import chunk_key
from tests.operations.test_metrics import Samples, scrape, value
from tests.pacs.forwarding import (
    FINAL_STATES,
    ForwardingBase,
    RecordingOrthanc,
    module_forwarding_base,
    pacs_settings,
    recording_orthanc,
    send_study,
    wait_for_state,
)
from tests.support import uploads
from tests.support.accounts import new_client, running_app, sign_in
from tests.support.dicom_studies import instance
from tests.support.orthanc import orthanc_available

pytestmark = pytest.mark.slow

DESTINATION = "orthanc"  # pacs_settings() names the destination


base = module_forwarding_base("metrics")
orthanc = recording_orthanc  # each test gets an Orthanc of its own


PATIENT_NAME, PATIENT_ID = "METRICS^PATIENT", "PID-METRICS-7"


def _study(count: int) -> list[bytes]:
    study_uid, series_uid = generate_uid(), generate_uid()
    return [
        instance(
            study_uid=study_uid,
            series_uid=series_uid,
            instance_number=n,
            patient_name=PATIENT_NAME,
            patient_id=PATIENT_ID,
        )
        for n in range(1, count + 1)
    ]


def _moved(before: Samples, after: Samples, name: str, **labels: str) -> float:
    return value(after, name, **labels) - value(before, name, **labels)


@pytest.mark.skipif(not orthanc_available(), reason="apt orthanc + orthanc-dicomweb")
async def test_delivery_to_orthanc_moves_stow_reachability_backlog_and_delivery_metrics(
    base: ForwardingBase, orthanc: RecordingOrthanc
) -> None:
    pacs = f"pacs:{DESTINATION}"
    async with (
        running_app(base.settings(**pacs_settings(orthanc))) as app,
        new_client(app) as client,
    ):
        user = await sign_in(client, app)
        before = await scrape(client)
        started = time.monotonic()
        session = await uploads.start(client, user.headers, _study(3), service_level="emergency")
        await uploads.send_all(client, session)
        status = await uploads.complete_and_wait(client, app, session)
        elapsed = time.monotonic() - started
        after = await scrape(client)

        assert status["state"] == "delivered", status
        stored = {"destination": DESTINATION, "outcome": "stored"}
        assert _moved(before, after, "relaypacs_stow_instances_total", **stored) == 3
        stow_requests = "relaypacs_stow_request_duration_seconds_count"
        assert _moved(before, after, stow_requests, **stored) >= 1
        assert _moved(before, after, "relaypacs_stow_request_duration_seconds_sum", **stored) > 0
        assert value(after, "relaypacs_pacs_up", destination=DESTINATION) == 1
        assert value(after, "relaypacs_dependency_up", dependency=pacs) == 1
        assert _moved(before, after, "relaypacs_uploads_finished_total", state="delivered") == 1
        emergency = {"service_level": "emergency"}
        delivery = "relaypacs_upload_delivery_seconds"
        assert _moved(before, after, delivery + "_count", **emergency) == 1
        assert 0 < _moved(before, after, delivery + "_sum", **emergency) <= elapsed + 1
        # Nothing waits for the destination any more.
        waiting = {"destination": DESTINATION, "state": "queued"}
        assert value(after, "relaypacs_destination_studies", **waiting) == 0

        # The PACS goes away: the next scrape's probe says so, and a study waits in its queue.
        await asyncio.to_thread(orthanc.kill)
        down = await scrape(client)
        assert value(down, "relaypacs_dependency_up", dependency=pacs) == 0
        assert value(down, "relaypacs_pacs_up", destination=DESTINATION) == 0
        held = await send_study(client, user.headers, _study(2), service_level="routine")
        assert (await wait_for_state(app, client, held, {"queued"} | FINAL_STATES))[
            "state"
        ] == "queued"
        backlog = await scrape(client)
        assert value(backlog, "relaypacs_destination_studies", **waiting) == 1
        assert (
            value(
                backlog, "relaypacs_destination_oldest_study_age_seconds", destination=DESTINATION
            )
            > 0
        )

        # It comes back: the queue drains by itself and every gauge returns.
        await asyncio.to_thread(orthanc.start)
        status = await wait_for_state(app, client, held, FINAL_STATES)
        assert status["state"] == "delivered", status
        back = await scrape(client)
        assert value(back, "relaypacs_dependency_up", dependency=pacs) == 1
        assert value(back, "relaypacs_pacs_up", destination=DESTINATION) == 1
        assert value(back, "relaypacs_destination_studies", **waiting) == 0
        assert (
            value(back, "relaypacs_destination_oldest_study_age_seconds", destination=DESTINATION)
            == 0
        )
        # Labels are fixed small sets: nothing of the studies, uploads or people appears.
        exposition = (await client.get("/metrics")).text
        for secret in (PATIENT_NAME, PATIENT_ID, session.id, held.id, user.id):
            assert str(secret) not in exposition
        routine = {"service_level": "routine"}
        assert _moved(after, back, delivery + "_count", **routine) == 1
        assert _moved(after, back, "relaypacs_uploads_finished_total", state="delivered") == 1
        assert _moved(after, back, "relaypacs_stow_instances_total", **stored) == 2


async def test_an_upload_that_fails_in_assembly_is_counted_as_failed(base: ForwardingBase) -> None:
    # Assembly after `complete` only, so the damage below is found there.
    async with (
        running_app(base.settings(assemble_while_receiving=False)) as app,
        new_client(app) as client,
    ):
        user = await sign_in(client, app)
        session = await uploads.start(client, user.headers, [instance(rows=512, columns=600)])
        assert len(session.all_chunks()) == 2
        await uploads.send_all(client, session)
        # A chunk damaged at rest after its 201: assembly re-verifies it and gives up.
        stored = (
            base.data_dir
            / "chunks"
            / chunk_key(uuid.UUID(session.id), uuid.UUID(session.file_id(0)), 0)
        )
        damaged = bytearray(stored.read_bytes())
        damaged[len(damaged) // 2] ^= 0xFF
        stored.write_bytes(bytes(damaged))
        before = await scrape(client)

        status = await uploads.complete_and_wait(client, app, session)
        after = await scrape(client)

    assert status["state"] == "failed", status
    assert _moved(before, after, "relaypacs_uploads_finished_total", state="failed") == 1
