"""Real DICOM studies written with pydicom: CT instances of a chosen size with random pixels.

Random pixel bytes do not compress, so a transfer of a generated study costs what its size says.
PatientID stays constant within a study (Orthanc keys a study by PatientID + StudyInstanceUID).
"""

from __future__ import annotations

import hashlib
import random
import zipfile
from dataclasses import dataclass
from pathlib import Path

from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

COLUMNS = 512


@dataclass(frozen=True)
class GeneratedStudy:
    study_instance_uid: str
    files: list[Path]
    patient_name: str
    modality: str
    study_date: str

    @property
    def size(self) -> int:
        return sum(f.stat().st_size for f in self.files)

    def sha256s(self) -> dict[str, str]:
        """SOP-independent: SHA-256 of every file, keyed by file name."""
        return {f.name: hashlib.sha256(f.read_bytes()).hexdigest() for f in self.files}


def write_instance(
    path: Path,
    *,
    study_uid: str,
    series_uid: str,
    number: int,
    pixel_bytes: int,
    patient_name: str,
    patient_id: str,
    modality: str,
    study_date: str,
    rng: random.Random,
) -> None:
    rows = max(1, pixel_bytes // (COLUMNS * 2))
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = series_uid
    ds.PatientName = patient_name
    ds.PatientID = patient_id
    ds.StudyDate = study_date
    ds.StudyTime = "101500"
    ds.StudyDescription = "RESILIENCE TEST"
    ds.Modality = modality
    ds.SeriesNumber = 1
    ds.InstanceNumber = number
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = rows
    ds.Columns = COLUMNS
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 0
    ds.PixelData = rng.randbytes(rows * COLUMNS * 2)
    ds.save_as(path, enforce_file_format=True)


def write_study(
    folder: Path,
    *,
    instances: int = 4,
    pixel_bytes: int = 256 * 1024,
    patient_name: str | None = None,
    patient_id: str | None = None,
    modality: str = "CT",
    study_date: str = "20260102",
    seed: int | None = None,
) -> GeneratedStudy:
    rng = random.Random(seed)
    # A new name per study: the gateway refuses the same name + date + modality as a duplicate.
    patient_name = patient_name or f"TEST^PATIENT{rng.randrange(10**9):09d}"
    folder.mkdir(parents=True, exist_ok=True)
    study_uid = generate_uid()
    series_uid = generate_uid()
    patient_id = patient_id or f"PID{rng.randrange(10**8):08d}"
    files = []
    for number in range(1, instances + 1):
        path = folder / f"IM{number:05d}.dcm"
        write_instance(
            path,
            study_uid=study_uid,
            series_uid=series_uid,
            number=number,
            pixel_bytes=pixel_bytes,
            patient_name=patient_name,
            patient_id=patient_id,
            modality=modality,
            study_date=study_date,
            rng=rng,
        )
        files.append(path)
    return GeneratedStudy(study_uid, files, patient_name, modality, study_date)


def zip_folder(folder: Path, archive: Path) -> Path:
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED) as out:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                out.write(path, path.relative_to(folder).as_posix())
    return archive
