"""DICOM test data made with pydicom: small and large (multi-frame) instances, ZIP exports."""

from __future__ import annotations

import io
import zipfile
from datetime import date

import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import (
    CTImageStorage,
    ExplicitVRLittleEndian,
    MultiFrameGrayscaleWordSecondaryCaptureImageStorage,
    generate_uid,
)


def instance(
    *,
    patient_name: str = "DOE^JANE",
    patient_id: str = "PID-0001",
    study_date: date = date(2024, 5, 17),
    modality: str = "CT",
    study_uid: str | None = None,
    series_uid: str | None = None,
    rows: int = 16,
    columns: int = 16,
    frames: int = 1,
    instance_number: int = 1,
) -> bytes:
    """A complete Part 10 file with native 16-bit pixel data."""
    meta = FileMetaDataset()
    sop_class = (
        CTImageStorage if frames == 1 else MultiFrameGrayscaleWordSecondaryCaptureImageStorage
    )
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID = study_uid or generate_uid()
    ds.SeriesInstanceUID = series_uid or generate_uid()
    ds.PatientName = patient_name
    ds.PatientID = patient_id
    ds.StudyDate = study_date.strftime("%Y%m%d")
    ds.Modality = modality
    ds.InstanceNumber = instance_number
    ds.SeriesNumber = 1
    ds.Rows = rows
    ds.Columns = columns
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = 16
    ds.BitsStored = 12
    ds.HighBit = 11
    ds.PixelRepresentation = 0
    if frames > 1:
        ds.NumberOfFrames = frames
    # Deterministic but not constant, so compression ratios stay realistic.
    length = rows * columns * frames * 2
    pattern = bytes((i * 7 + i // 251) & 0xFF for i in range(65_521))  # a prime period
    ds.PixelData = (pattern * (length // len(pattern) + 1))[:length]
    buffer = io.BytesIO()
    pydicom.dcmwrite(buffer, ds, enforce_file_format=True)
    return buffer.getvalue()


def large_multiframe(frames: int = 40, rows: int = 512, columns: int = 512) -> bytes:
    """~20 MiB with the defaults: spans many chunks."""
    return instance(rows=rows, columns=columns, frames=frames, modality="OT")


def zip_of(entries: dict[str, bytes], *, compression: int = zipfile.ZIP_DEFLATED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=compression) as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    return buffer.getvalue()
