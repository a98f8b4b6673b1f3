"""Completion validates with pydicom: real shipped files, broken ones, ZIP exports, big files."""

from __future__ import annotations

import hashlib
import io
import zipfile
from pathlib import Path

import httpx
from fastapi import FastAPI
from pydicom.data import get_testdata_files

from tests.support import uploads
from tests.support.accounts import sign_in
from tests.support.dicom_studies import instance, large_multiframe, zip_of


def shipped(name: str) -> bytes:
    # Local files only: get_testdata_file() would try to download missing ones.
    path = min(p for p in get_testdata_files() if Path(p).name == name)
    return Path(path).read_bytes()


async def test_pydicom_test_files_valid_broken_and_dicomdir_are_judged_per_file(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    names = [
        "CT_small.dcm",
        "MR_small_implicit.dcm",
        "JPEG2000.dcm",
        "MR_truncated.dcm",
        "rtplan_truncated.dcm",
        "meta_missing_tsyntax.dcm",
        "no_meta.dcm",
        "DICOMDIR",
        "README.txt",
    ]
    user = await sign_in(client, app)
    contents = [shipped(n) for n in names]
    session = await uploads.start(client, user.headers, contents, names=names)
    await uploads.send_all(client, session)
    status = await uploads.complete_and_wait(client, app, session)
    assert status["state"] == "delivered"
    assert status["instance_count"] == 3
    by_name = {f["name"]: f for f in status["files"]}
    assert [by_name[n]["status"] for n in names] == [
        "valid",
        "valid",
        "valid",
        "invalid",
        "invalid",
        "invalid",
        "invalid",
        "skipped",
        "invalid",
    ]
    assert "truncated" in by_name["MR_truncated.dcm"]["problems"][0]["reason"]
    assert "truncated" in by_name["rtplan_truncated.dcm"]["problems"][0]["reason"]
    assert "transfer syntax" in by_name["meta_missing_tsyntax.dcm"]["problems"][0]["reason"]
    assert "not DICOM" in by_name["README.txt"]["problems"][0]["reason"]
    assert "DICOMDIR" in by_name["DICOMDIR"]["problems"][0]["reason"]
    for name, data in zip(names, contents, strict=True):
        assert by_name[name]["sha256"] == hashlib.sha256(data).hexdigest()


async def test_upload_without_any_valid_instance_is_rejected(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    user = await sign_in(client, app)
    names = ["notes.txt", "MR_truncated.dcm"]
    session = await uploads.start(
        client, user.headers, [b"hello, not DICOM", shipped("MR_truncated.dcm")], names=names
    )
    await uploads.send_all(client, session)
    status = await uploads.complete_and_wait(client, app, session)
    assert status["state"] == "rejected"
    assert status["failure_reason"]
    assert status["instances"] == []
    assert status["timeline"][-1]["state"] == "rejected"


async def test_zip_export_is_unpacked_with_path_tricks_and_bombs_refused(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    study_uid = "1.2.826.0.1.3680043.8.498.1"
    images = {
        f"DICOM/IM{i:04d}": instance(study_uid=study_uid, instance_number=i) for i in range(3)
    }
    entries = {
        "DICOMDIR": shipped("DICOMDIR"),
        **images,
        "README.TXT": b"Viewer on this CD",
        "__MACOSX/._IM0000": b"litter",
        "../escape.dcm": instance(),
        "/absolute.dcm": instance(),
        "bomb.bin": bytes(50 * 1024 * 1024),
    }
    archive = zip_of(entries)
    user = await sign_in(client, app)
    session = await uploads.start(client, user.headers, [archive], names=["cd-export.zip"])
    await uploads.send_all(client, session)
    status = await uploads.complete_and_wait(client, app, session)

    assert status["state"] == "delivered"
    assert status["instance_count"] == 3
    assert sorted(i["entry_name"] for i in status["instances"]) == sorted(images)
    for found in status["instances"]:
        assert found["sha256"] == hashlib.sha256(images[found["entry_name"]]).hexdigest()
        assert found["study_instance_uid"] == study_uid
    [zip_file] = status["files"]
    assert zip_file["status"] == "partial"
    problems = {p["entry"]: p for p in zip_file["problems"]}
    assert problems["DICOMDIR"]["status"] == "skipped"
    assert "not DICOM" in problems["README.TXT"]["reason"]
    assert "'..'" in problems["../escape.dcm"]["reason"]
    assert "absolute" in problems["/absolute.dcm"]["reason"]
    assert "ratio" in problems["bomb.bin"]["reason"]
    assert "__MACOSX/._IM0000" not in problems
    # Instances are stored as their own objects, byte for byte.
    store = app.state.resources.chunk_store
    for found in status["instances"]:
        stored = await _read_instance(app, status["upload_id"], found["instance_id"])
        assert hashlib.sha256(stored).hexdigest() == found["sha256"]
    assert store is not None


async def _read_instance(app: FastAPI, upload_id: str, instance_id: str) -> bytes:
    import uuid

    from relaypacs.dicom.models import DicomInstance

    async with app.state.sessionmaker() as db:
        row = await db.get(DicomInstance, uuid.UUID(instance_id))
        assert row is not None
        assert str(row.upload_id) == upload_id
        key = row.store_key
    store = app.state.resources.chunk_store
    return b"".join([block async for block in store.read(key)])


async def test_zip_with_too_many_entries_is_refused_whole(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED) as archive:
        for i in range(10_001):
            archive.writestr(f"f{i}", b"")
    user = await sign_in(client, app)
    session = await uploads.start(client, user.headers, [buffer.getvalue()], names=["many.zip"])
    await uploads.send_all(client, session)
    status = await uploads.complete_and_wait(client, app, session)
    assert status["state"] == "rejected"
    assert "more than 10000 entries" in status["files"][0]["problems"][0]["reason"]


async def test_large_multiframe_instance_over_many_chunks_is_byte_identical(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    data = large_multiframe(frames=40)  # ~20 MiB, 20 chunks of 1 MiB
    user = await sign_in(client, app)
    session = await uploads.start(
        client, user.headers, [data], chunk_size=uploads.MIB, modality="OT"
    )
    await uploads.send_all(client, session)
    status = await uploads.complete_and_wait(client, app, session)
    assert status["state"] == "delivered"
    [found] = status["instances"]
    assert found["size"] == len(data)
    assert found["sha256"] == hashlib.sha256(data).hexdigest()
    assert (
        hashlib.sha256(
            await _read_instance(app, status["upload_id"], found["instance_id"])
        ).hexdigest()
        == hashlib.sha256(data).hexdigest()
    )


async def test_header_disagreeing_with_declared_study_is_a_warning_without_the_values(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    user = await sign_in(client, app)
    data = instance(patient_name="SOMEONE^ELSE", modality="MR")
    session = await uploads.start(
        client, user.headers, [data], patient_name="Doe^Jane", modality="CT"
    )
    await uploads.send_all(client, session)
    status = await uploads.complete_and_wait(client, app, session)
    assert status["state"] == "delivered"
    codes = {w["code"] for w in status["warnings"]}
    assert codes == {"patient_name_mismatch", "modality_mismatch"}
    assert "SOMEONE" not in str(status["warnings"])


async def test_same_sop_instance_twice_in_one_upload_keeps_the_first(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    user = await sign_in(client, app)
    data = instance()
    session = await uploads.start(client, user.headers, [data, data], names=["a.dcm", "b.dcm"])
    await uploads.send_all(client, session)
    status = await uploads.complete_and_wait(client, app, session)
    assert status["instance_count"] == 1
    assert status["files"][1]["status"] == "invalid"
    assert "duplicate SOP Instance UID" in status["files"][1]["problems"][0]["reason"]
