"""A transport failure is never a refusal (DESIGN.md promise 4): real sockets that reset, close
mid-answer, cut a body short or answer before the request was read, and a real Orthanc behind a
proxy that does the same to its first STOW-RS request."""

from __future__ import annotations

import hashlib

import httpx
import pytest
from pydicom.uid import generate_uid

from relaypacs.pacs.destination import InstanceOutcome
from relaypacs.pacs.destinations.dicomweb import DicomWebDestination, interpret_stow_response
from relaypacs.pacs.exceptions import DestinationUnavailable
from relaypacs.pacs.service import BatchLimits, store_in_batches
from tests.pacs.conftest import stow_instances, study
from tests.pacs.faulty_server import Fault, FaultyProxy, FaultyStowServer
from tests.pacs.forwarding import (
    FINAL_STATES,
    ForwardingBase,
    RecordingOrthanc,
    module_forwarding_base,
    pacs_settings,
    recording_orthanc,
    send_study,
    sop_instance_uid,
    timeline,
    wait_for_state,
)
from tests.support.accounts import new_client, running_app, sign_in
from tests.support.dicom_studies import instance


def _destination(url: str) -> DicomWebDestination:
    return DicomWebDestination(
        "faulty", url, kind="orthanc", timeout=httpx.Timeout(2.0, connect=2.0, pool=2.0)
    )


@pytest.mark.parametrize("fault", list(Fault))
async def test_a_transport_failure_fails_the_batch_for_now_and_never_refuses(fault: Fault) -> None:
    study_uid, files = study(4, pixels=256)  # ~0.5 MB of body
    async with FaultyStowServer(fault) as server:
        destination = _destination(server.url)
        try:
            with pytest.raises(DestinationUnavailable) as raised:
                await destination.store_instances(stow_instances(study_uid, files))
            # What the forwarding stage sees: every instance waits for the next attempt.
            result = await store_in_batches(
                destination, stow_instances(study_uid, files), BatchLimits(max_instances=2)
            )
        finally:
            await destination.close()
    assert server.requests >= 3
    assert "STOW-RS" in raised.value.reason
    assert [r.outcome for r in result.instances] == [InstanceOutcome.failed] * len(files)
    assert not result.refused
    assert not result.stored


def test_an_answer_that_came_before_the_request_was_sent_whole_is_no_verdict() -> None:
    study_uid, files = study(2)
    instances = stow_instances(study_uid, files)
    with pytest.raises(DestinationUnavailable, match="before the request was sent whole"):
        interpret_stow_response(
            409, b"", {"content-length": "0"}, instances, request_sent_whole=False
        )
    with pytest.raises(DestinationUnavailable, match="before the request was sent whole"):
        interpret_stow_response(
            200, b"", {"content-length": "0"}, instances, request_sent_whole=False
        )


# --- through the gateway, a real Orthanc behind the faulty proxy ------------------------------


base = module_forwarding_base("transport")
orthanc = recording_orthanc  # each test gets an Orthanc of its own


@pytest.mark.slow
@pytest.mark.parametrize(
    "fault", [Fault.early_400, Fault.reset_mid_body, Fault.cut_409_without_length]
)
async def test_a_study_whose_first_stow_rs_answer_is_lost_is_delivered_not_failed(
    base: ForwardingBase, orthanc: RecordingOrthanc, fault: Fault
) -> None:
    study_uid = generate_uid()
    series_uid = generate_uid()
    files = [
        instance(study_uid=study_uid, series_uid=series_uid, instance_number=n) for n in (1, 2, 3)
    ]
    async with FaultyProxy(orthanc.http_port, fault) as proxy:
        settings = base.settings(**{**pacs_settings(orthanc), "pacs_url": proxy.url})
        async with running_app(settings) as app, new_client(app) as client:
            user = await sign_in(client, app)
            session = await send_study(client, user.headers, files)
            status = await wait_for_state(app, client, session, FINAL_STATES)

    assert proxy.spoiled == 1
    assert status["state"] == "delivered", status
    # The lost answer made the study wait for the next attempt; nothing was refused.
    assert "failed" not in timeline(status)
    assert timeline(status)[-3:] == ["queued", "forwarding", "delivered"]
    assert {i["forward_status"] for i in status["instances"]} == {"stored"}
    for data in files:
        stored = orthanc.instance_sha256(sop_instance_uid(data))
        assert stored == hashlib.sha256(data).hexdigest()
    assert orthanc.study_instance_count(study_uid) == len(files)
