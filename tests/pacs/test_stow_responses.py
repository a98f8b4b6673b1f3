"""STOW-RS response handling and the dcm4chee-arc URL scheme, without a live server.

dcm4chee-arc cannot run on this machine. Its responses below are written from its conformance
statement (dcm4chee-arc-cs, "STOW-RS Specifications": 200 all stored, 202 some failed or
warnings, 400 bad syntax, 401/403 not authenticated or authorized, 409 none stored with the
reasons in the body) and the Store Instances Response Module of PS3.18 Annex I in DICOM JSON
(PS3.18 F.2). httpx's MockTransport stands in for the network edge only.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from relaypacs.pacs.destination import InstanceOutcome, StowInstance
from relaypacs.pacs.destinations.dicomweb import (
    DicomWebDestination,
    dicomweb_root,
    interpret_stow_response,
)
from relaypacs.pacs.exceptions import (
    BatchTooLarge,
    DestinationMisconfigured,
    DestinationUnavailable,
)
from relaypacs.pacs.service import BatchLimits, plan_batches, store_in_batches
from relaypacs.pacs.status import StatusCategory, parse_status_code, store_status
from tests.pacs.conftest import stow_instance

STUDY = "1.2.826.0.1.3680043.8.498.1"
SOP_CLASS = "1.2.840.10008.5.1.4.1.1.2"
AET_ROOT = "http://pacs.example:8080/dcm4chee-arc/aets/DCM4CHEE/rs"


def _instances(count: int, size: int = 300) -> list[StowInstance]:
    return [stow_instance(f"{STUDY}.{n}", bytes([n]) * size, study_uid=STUDY) for n in range(count)]


def _referenced(uid: str, warning: int | None = None) -> dict[str, Any]:
    item: dict[str, Any] = {
        "00081150": {"vr": "UI", "Value": [SOP_CLASS]},
        "00081155": {"vr": "UI", "Value": [uid]},
        "00081190": {"vr": "UR", "Value": [f"{AET_ROOT}/studies/{STUDY}/instances/{uid}"]},
    }
    if warning is not None:
        item["00081196"] = {"vr": "US", "Value": [warning]}
    return item


def _failed(uid: str, reason: int | str) -> dict[str, Any]:
    return {
        "00081150": {"vr": "UI", "Value": [SOP_CLASS]},
        "00081155": {"vr": "UI", "Value": [uid]},
        "00081197": {"vr": "US", "Value": [reason]},
    }


def _module(stored: list[dict[str, Any]], failed: list[dict[str, Any]]) -> bytes:
    body: dict[str, Any] = {"00081190": {"vr": "UR", "Value": [f"{AET_ROOT}/studies/{STUDY}"]}}
    if stored:
        body["00081199"] = {"vr": "SQ", "Value": stored}
    if failed:
        body["00081198"] = {"vr": "SQ", "Value": failed}
    return json.dumps(body).encode()


def test_dcm4chee_root_is_built_from_server_url_and_ae_title() -> None:
    assert dicomweb_root("http://pacs.example:8080/", "dcm4chee", aet="DCM4CHEE") == AET_ROOT
    assert dicomweb_root(AET_ROOT + "/", "dcm4chee") == AET_ROOT
    assert (
        dicomweb_root("https://pacs.example/", "dcm4chee", aet="RELAY")
        == "https://pacs.example/dcm4chee-arc/aets/RELAY/rs"
    )
    assert dicomweb_root("http://o:8042", "orthanc") == "http://o:8042/dicom-web"
    assert dicomweb_root("http://o:8042/dicom-web/", "orthanc") == "http://o:8042/dicom-web"
    assert dicomweb_root("http://g/wado/rs", "generic") == "http://g/wado/rs"
    with pytest.raises(ValueError, match="kind"):
        dicomweb_root("http://g", "conquest")


async def test_stow_request_goes_to_studies_with_exact_length_json_accept_and_token() -> None:
    seen: list[httpx.Request] = []
    bodies: list[bytes] = []

    async def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        bodies.append(await request.aread())
        uids = [i.sop_instance_uid for i in instances]
        return httpx.Response(200, content=_module([_referenced(u) for u in uids], []))

    instances = _instances(3)
    destination = DicomWebDestination(
        "dcm4chee",
        AET_ROOT,
        kind="dcm4chee",
        token="t0ken",
        transport=httpx.MockTransport(handler),
    )
    result = await destination.store_instances(instances)
    await destination.close()
    (request,) = seen
    assert str(request.url) == f"{AET_ROOT}/studies"
    assert request.headers["authorization"] == "Bearer t0ken"
    assert request.headers["accept"] == "application/dicom+json"
    assert "transfer-encoding" not in request.headers
    assert int(request.headers["content-length"]) == len(bodies[0])
    content_type = request.headers["content-type"]
    assert content_type.startswith('multipart/related; type="application/dicom"; boundary=')
    boundary = content_type.rsplit("boundary=", 1)[1]
    parts = bodies[0].split(f"--{boundary}".encode())
    assert parts[0] == b""
    assert parts[-1] == b"--\r\n"
    for part, instance in zip(parts[1:-1], instances, strict=True):
        header, _, data = part.partition(b"\r\n\r\n")
        assert header == b"\r\nContent-Type: application/dicom"
        assert data == bytes([int(instance.sop_instance_uid.rsplit(".", 1)[1])]) * 300 + b"\r\n"
    assert len(result.stored) == 3


def test_200_stores_all_and_keeps_warnings() -> None:
    instances = _instances(2)
    uids = [i.sop_instance_uid for i in instances]
    body = _module([_referenced(uids[0], warning=0xB000), _referenced(uids[1])], [])
    result = interpret_stow_response(200, body, {}, instances)
    first, second = result.instances
    assert (first.outcome, first.status, first.reason) == (
        InstanceOutcome.stored,
        0xB000,
        "0xB000 Coercion of data elements",
    )
    assert (second.outcome, second.reason) == (InstanceOutcome.stored, None)


def test_200_without_a_body_means_every_instance_was_stored() -> None:
    result = interpret_stow_response(200, b"", {}, _instances(2))
    assert [r.outcome for r in result.instances] == [InstanceOutcome.stored] * 2


def test_202_separates_stored_from_refused_and_retries_the_unlisted() -> None:
    instances = _instances(3)
    uids = [i.sop_instance_uid for i in instances]
    body = _module([_referenced(uids[0])], [_failed(uids[1], 0xA900)])
    result = interpret_stow_response(202, body, {}, instances)
    stored, refused, unlisted = result.instances
    assert stored.outcome is InstanceOutcome.stored
    assert (refused.outcome, refused.status) == (InstanceOutcome.refused, 0xA900)
    assert refused.reason == "0xA900 Error: data set does not match SOP class"
    assert unlisted.outcome is InstanceOutcome.failed


def test_409_lists_each_failure_permanent_or_transient_by_its_code() -> None:
    instances = _instances(4)
    uids = [i.sop_instance_uid for i in instances]
    body = _module(
        [],
        [
            _failed(uids[0], 0x0122),
            _failed(uids[1], 0xA700),
            _failed(uids[2], "C122"),  # hex text, as some servers write it
            _failed(uids[3], 0x0110),
        ],
    )
    result = interpret_stow_response(409, body, {}, instances)
    assert [(r.outcome, r.status) for r in result.instances] == [
        (InstanceOutcome.refused, 0x0122),
        (InstanceOutcome.failed, 0xA700),
        (InstanceOutcome.refused, 0xC122),
        (InstanceOutcome.failed, 0x0110),
    ]
    assert result.instances[2].reason == "0xC122 Referenced transfer syntax not supported"


def test_dcm4chee_policy_refusals_in_the_a7xx_range_are_final_and_say_why() -> None:
    # dcm4chee-arc's STOW-RS answers 409 when it stored nothing, each instance with the status
    # its StoreService threw: 0xA778 when the study already holds another patient ID. Sending
    # it again meets the same refusal; a full archive (0xA700) may take it later.
    instances = _instances(3)
    uids = [i.sop_instance_uid for i in instances]
    body = _module(
        [], [_failed(uids[0], 0xA778), _failed(uids[1], 0xA700), _failed(uids[2], "A771")]
    )
    headers = {"content-type": "application/dicom+json", "content-length": str(len(body))}
    result = interpret_stow_response(409, body, headers, instances)
    assert [(r.outcome, r.status) for r in result.instances] == [
        (InstanceOutcome.refused, 0xA778),
        (InstanceOutcome.failed, 0xA700),
        (InstanceOutcome.refused, 0xA771),
    ]
    assert result.instances[0].reason == (
        "0xA778 Refused by dcm4chee-arc: patient ID differs from earlier objects of the study"
    )
    assert result.instances[1].reason == "0xA700 Refused: out of resources"
    assert result.instances[2].reason == (
        "0xA771 Refused by dcm4chee-arc: subsequent occurrence of a rejected object"
    )


@pytest.mark.parametrize(
    ("content", "headers"),
    [
        (b"<html>Bad Request</html>", {"content-type": "text/html", "content-length": "24"}),
        (b"", {"content-length": "0"}),  # Orthanc, when its read of the request body failed
        (b'{"00081198": {"vr": "SQ", "Val', {"content-type": "application/dicom+json"}),
    ],
)
def test_a_4xx_without_a_store_instances_response_refuses_nothing(
    content: bytes, headers: dict[str, str]
) -> None:
    # Only an answer that names the instances can refuse them: this one waits for a retry.
    with pytest.raises(DestinationUnavailable, match="HTTP 400"):
        interpret_stow_response(400, content, headers, _instances(2))


def test_a_4xx_with_a_store_instances_response_refuses_the_listed_and_unlisted() -> None:
    instances = _instances(2)
    uids = [i.sop_instance_uid for i in instances]
    body = _module([], [_failed(uids[0], 0xC000)])
    result = interpret_stow_response(400, body, {"content-length": str(len(body))}, instances)
    assert [(r.outcome, r.reason) for r in result.instances] == [
        (InstanceOutcome.refused, "0xC000 Error: cannot understand"),
        (InstanceOutcome.refused, "refused by the destination (HTTP 400)"),
    ]


def test_a_200_whose_json_body_is_cut_off_stores_nothing_for_now() -> None:
    with pytest.raises(DestinationUnavailable, match="unreadable"):
        interpret_stow_response(200, b'{"00081199": {"vr"', {}, _instances(2))


@pytest.mark.parametrize(
    ("status", "error", "retry_after"),
    [
        (503, DestinationUnavailable, 120.0),
        (500, DestinationUnavailable, None),
        (429, DestinationUnavailable, 120.0),
        (408, DestinationUnavailable, None),
        (401, DestinationMisconfigured, None),
        (403, DestinationMisconfigured, None),
        (404, DestinationMisconfigured, None),
        (302, DestinationMisconfigured, None),
        (415, DestinationMisconfigured, None),
    ],
)
def test_destination_level_statuses_raise_instead_of_blaming_instances(
    status: int, error: type[Exception], retry_after: float | None
) -> None:
    headers = {"retry-after": "120"} if retry_after else {}
    with pytest.raises(error) as raised:
        interpret_stow_response(status, b"", headers, _instances(1))
    assert getattr(raised.value, "retry_after", None) == retry_after
    assert str(status) in str(raised.value)


def test_413_asks_for_smaller_batches() -> None:
    with pytest.raises(BatchTooLarge):
        interpret_stow_response(413, b"", {}, _instances(2))


async def test_batches_shrink_on_413_until_one_instance_is_refused_alone() -> None:
    limit = 700  # bytes of body one request may carry

    async def handler(request: httpx.Request) -> httpx.Response:
        if int(request.headers["content-length"]) > limit:
            return httpx.Response(413)
        await request.aread()
        return httpx.Response(200)

    instances = [*_instances(3, size=200), *_instances(1, size=900)]
    destination = DicomWebDestination("pacs", AET_ROOT, transport=httpx.MockTransport(handler))
    result = await store_in_batches(destination, instances, BatchLimits(parallel=1))
    await destination.close()
    assert [r.outcome for r in result.instances].count(InstanceOutcome.stored) == 3
    (refused,) = result.refused
    assert refused.reason == "too large for the destination (HTTP 413)"


def test_batches_respect_both_bounds_and_keep_order() -> None:
    sizes = [10, 10, 10, 50, 10, 100, 10]
    instances = [
        stow_instance(f"{STUDY}.{n}", b"x" * size, study_uid=STUDY) for n, size in enumerate(sizes)
    ]
    batches = plan_batches(instances, BatchLimits(max_bytes=60, max_instances=3))
    assert [[i.size for i in batch] for batch in batches] == [
        [10, 10, 10],
        [50, 10],
        [100],
        [10],
    ]


@pytest.mark.parametrize(
    ("code", "category"),
    [
        (0x0000, StatusCategory.success),
        (0xB000, StatusCategory.warning),
        (0xB006, StatusCategory.warning),
        (0xB007, StatusCategory.warning),
        (0xA700, StatusCategory.transient),
        (0xA76F, StatusCategory.transient),
        *((code, StatusCategory.permanent) for code in range(0xA770, 0xA77A)),  # dcm4chee-arc
        (0xA77A, StatusCategory.transient),
        (0xA7FF, StatusCategory.transient),
        (0x0110, StatusCategory.transient),
        (0xA900, StatusCategory.permanent),
        (0xA9FF, StatusCategory.permanent),
        (0xC000, StatusCategory.permanent),
        (0xCFFF, StatusCategory.permanent),
        (0xC122, StatusCategory.permanent),
        (0x0122, StatusCategory.permanent),
        (0x0124, StatusCategory.permanent),
        (0x1234, StatusCategory.permanent),
    ],
)
def test_status_table_follows_ps3_18_annex_i(code: int, category: StatusCategory) -> None:
    assert store_status(code).category is category


@pytest.mark.parametrize(
    ("value", "code"),
    [(49152, 0xC000), ("C000", 0xC000), ("0xa700", 0xA700), ("zz", None), (True, None), (-1, None)],
)
def test_status_values_are_read_as_numbers_or_hex_text(value: object, code: int | None) -> None:
    assert parse_status_code(value) == code


async def test_qido_count_pages_through_large_studies() -> None:
    pages: list[tuple[str, str]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        offset = int(request.url.params["offset"])
        pages.append((request.url.params["limit"], request.url.params["offset"]))
        remaining = max(0, 2500 - offset)
        count = min(1000, remaining)
        items = [
            {"00080018": {"vr": "UI", "Value": [f"{STUDY}.{offset + n}"]}} for n in range(count)
        ]
        return httpx.Response(200, json=items) if items else httpx.Response(204)

    destination = DicomWebDestination(
        "pacs", AET_ROOT, kind="dcm4chee", transport=httpx.MockTransport(handler)
    )
    assert await destination.count_instances(STUDY) == 2500
    await destination.close()
    # A short page may be the server's cap, not the end: the empty page (204) after it ends.
    assert pages == [("1000", "0"), ("1000", "1000"), ("1000", "2000"), ("1000", "2500")]
