"""PACS fixtures: a real Orthanc per session (and one per test for outages), DICOM instances."""

from __future__ import annotations

import hashlib
import io
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

from relaypacs.pacs.destination import StowInstance
from relaypacs.pacs.destinations.dicomweb import DicomWebDestination
from tests.support.orthanc import OrthancServer, orthanc_available

requires_orthanc = pytest.mark.skipif(
    not orthanc_available(), reason="apt orthanc + orthanc-dicomweb (make system-deps)"
)


@pytest.fixture(scope="session")
def orthanc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OrthancServer]:
    if not orthanc_available():
        pytest.skip("apt orthanc + orthanc-dicomweb are not installed (make system-deps)")
    server = OrthancServer(tmp_path_factory.mktemp("orthanc"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def own_orthanc(tmp_path: Path) -> Iterator[OrthancServer]:
    """An Orthanc this test may stop, kill and restart."""
    if not orthanc_available():
        pytest.skip("apt orthanc + orthanc-dicomweb are not installed (make system-deps)")
    server = OrthancServer(tmp_path / "orthanc")
    server.start()
    yield server
    server.kill()


@pytest.fixture
async def orthanc_destination(orthanc: OrthancServer) -> AsyncIterator[DicomWebDestination]:
    destination = DicomWebDestination(
        "orthanc",
        orthanc.dicomweb_url,
        kind="orthanc",
        username=orthanc.username,
        password=orthanc.password,
    )
    yield destination
    await destination.close()


def dicom_bytes(
    study_uid: str,
    *,
    series_uid: str | None = None,
    pixels: int = 32,
    with_series_uid: bool = True,
    patient_id: str = "RELAY-TEST-1",
) -> tuple[str, bytes]:
    """(SOP Instance UID, Part 10 bytes) of a CT image with ``pixels``² 16-bit pixels."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    dataset = Dataset()
    dataset.file_meta = meta
    dataset.SOPClassUID = CTImageStorage
    dataset.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    dataset.StudyInstanceUID = study_uid
    if with_series_uid:
        dataset.SeriesInstanceUID = series_uid or generate_uid()
    # Orthanc keys a study by PatientID + StudyInstanceUID: keep it constant within a study.
    dataset.PatientID = patient_id
    dataset.PatientName = "TEST^RELAY"
    dataset.Modality = "CT"
    dataset.Rows = pixels
    dataset.Columns = pixels
    dataset.SamplesPerPixel = 1
    dataset.PhotometricInterpretation = "MONOCHROME2"
    dataset.BitsAllocated = 16
    dataset.BitsStored = 16
    dataset.HighBit = 15
    dataset.PixelRepresentation = 0
    dataset.PixelData = bytes(range(256)) * (pixels * pixels * 2 // 256) + bytes(
        pixels * pixels * 2 % 256
    )
    buffer = io.BytesIO()
    dataset.save_as(buffer, enforce_file_format=True)
    return str(dataset.SOPInstanceUID), buffer.getvalue()


def stow_instance(
    sop_instance_uid: str,
    data: bytes,
    *,
    study_uid: str,
    series_uid: str = "1.2.3.4",
    sha256: str | None = "auto",
    block: int = 64 * 1024,
) -> StowInstance:
    async def open_stream() -> AsyncIterator[bytes]:
        for start in range(0, len(data), block):
            yield data[start : start + block]

    return StowInstance(
        sop_instance_uid=sop_instance_uid,
        sop_class_uid=str(CTImageStorage),
        study_instance_uid=study_uid,
        series_instance_uid=series_uid,
        size=len(data),
        open=open_stream,
        sha256=hashlib.sha256(data).hexdigest() if sha256 == "auto" else sha256,
    )


def study(count: int, *, pixels: int = 32) -> tuple[str, list[tuple[str, bytes]]]:
    study_uid = generate_uid()
    series_uid = generate_uid()
    return study_uid, [
        dicom_bytes(study_uid, series_uid=series_uid, pixels=pixels) for _ in range(count)
    ]


def stow_instances(study_uid: str, files: list[tuple[str, bytes]]) -> list[StowInstance]:
    return [stow_instance(uid, data, study_uid=study_uid) for uid, data in files]
