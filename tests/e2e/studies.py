"""Real DICOM files for the browser tests, made from pydicom's own test data."""

from __future__ import annotations

import os
from pathlib import Path

import pydicom
from pydicom.data import get_testdata_file
from pydicom.uid import generate_uid


def write_study(
    folder: Path,
    *,
    instances: int,
    patient_name: str = "DOE^JANE",
    patient_id: str = "E2E-0001",
    study_date: str = "20260102",
    image_side: int = 128,
) -> Path:
    """One CT study: ``instances`` files sharing patient and study UIDs, pixel data random so
    chunks differ, plus a text file that the PWA must leave out."""
    template = pydicom.dcmread(str(get_testdata_file("CT_small.dcm")))
    folder.mkdir(parents=True, exist_ok=True)
    study_uid = generate_uid()
    series_uid = generate_uid()
    for number in range(1, instances + 1):
        ds = template.copy()
        ds.PatientName = patient_name
        ds.PatientID = patient_id
        ds.StudyDate = study_date
        ds.StudyInstanceUID = study_uid
        ds.SeriesInstanceUID = series_uid
        ds.SOPInstanceUID = generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.InstanceNumber = number
        ds.Rows = image_side
        ds.Columns = image_side
        ds.PixelData = os.urandom(image_side * image_side * 2)
        ds.save_as(folder / f"IM{number:04d}.dcm", enforce_file_format=True)
    (folder / "README.txt").write_text("export notes: not a DICOM file\n")
    return folder
