"""Find DICOM files in folders and ZIPs, read their headers, group them into studies.

Only headers are read (``stop_before_pixels``), in a thread pool, so scanning a 2 GB study costs
a few reads per file. Anything that is not a DICOM instance (no preamble and no plausible
implicit-VR header, a DICOMDIR, a file without UIDs) is listed as skipped with the reason.
"""

from __future__ import annotations

import hashlib
import os
import zipfile
from collections import Counter
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pydicom

DICOMDIR_SOP_CLASS = "1.2.840.10008.1.3.10"
# Series that annotate a study rather than image it; they never decide the study's modality.
NON_IMAGING_MODALITIES = frozenset({"SR", "KO", "PR", "REG", "SEG", "RTSTRUCT", "DOC", "OT"})
HEADER_TAGS = [
    "SOPClassUID",
    "SOPInstanceUID",
    "StudyInstanceUID",
    "SeriesInstanceUID",
    "PatientName",
    "PatientID",
    "StudyDate",
    "SeriesDate",
    "AcquisitionDate",
    "ContentDate",
    "Modality",
    "StudyDescription",
    "AccessionNumber",
]
ZIP_MAGIC = b"PK\x03\x04"


@dataclass(frozen=True)
class Source:
    """One candidate file: a file on disk, or one member of a ZIP archive."""

    path: Path
    member: str | None
    size: int
    name: str
    fingerprint: str
    #: The file's modification time at the scan (None for a ZIP member): a read that finds
    #: another one, or another size, is reading a file that changed under the run.
    mtime_ns: int | None = None

    @property
    def in_zip(self) -> bool:
        return self.member is not None

    def open(self) -> IO[bytes]:
        if self.member is None:
            return self.path.open("rb")
        archive = zipfile.ZipFile(self.path)
        try:
            return archive.open(self.member)
        except BaseException:
            archive.close()
            raise


@dataclass(frozen=True)
class Instance:
    source: Source
    study_instance_uid: str
    series_instance_uid: str
    sop_instance_uid: str
    patient_name: str
    patient_id: str
    study_date: date | None
    modality: str
    study_description: str


@dataclass(frozen=True)
class Skipped:
    name: str
    reason: str


@dataclass
class Study:
    study_instance_uid: str
    instances: list[Instance] = field(default_factory=list)

    @property
    def size(self) -> int:
        return sum(i.source.size for i in self.instances)

    @property
    def fingerprint(self) -> str:
        """This exact set of files: a changed study is never resumed as the old one."""
        digest = hashlib.sha256(self.study_instance_uid.encode())
        for source in sorted(i.source.fingerprint for i in self.instances):
            digest.update(b"\0" + source.encode())
        return digest.hexdigest()[:32]

    @property
    def first(self) -> Instance:
        return self.instances[0]

    @property
    def modality(self) -> str:
        counts = Counter(i.modality for i in self.instances if i.modality)
        imaging = [m for m, _ in counts.most_common() if m not in NON_IMAGING_MODALITIES]
        if imaging:
            return imaging[0]
        return counts.most_common(1)[0][0] if counts else "OT"

    @property
    def study_date(self) -> date | None:
        dates = [i.study_date for i in self.instances if i.study_date is not None]
        return Counter(dates).most_common(1)[0][0] if dates else None

    def metadata(self, service_level: str | None, clinical_history: str | None) -> dict[str, Any]:
        """The ``study`` object of ``POST /uploads``, filled from the headers."""
        first = self.first
        study: dict[str, Any] = {
            "patient_name": first.patient_name or first.patient_id or "ANONYMOUS",
            "study_date": (self.study_date or datetime.now(UTC).date()).isoformat(),
            "modality": self.modality,
        }
        if first.patient_id:
            study["patient_id"] = first.patient_id
        if first.study_description:
            study["study_description"] = first.study_description
        if service_level:
            study["service_level"] = service_level
        if clinical_history:
            study["clinical_history"] = clinical_history
        return study


@dataclass
class ScanResult:
    studies: list[Study]
    skipped: list[Skipped]


def _display_name(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return path.name


def _file_fingerprint(path: Path, stat: os.stat_result) -> str:
    return f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}"


def _is_zip(path: Path) -> bool:
    try:
        with path.open("rb") as f:
            return f.read(4) == ZIP_MAGIC
    except OSError:
        return False


def _zip_sources(path: Path, name: str, skipped: list[Skipped]) -> Iterator[Source]:
    try:
        with zipfile.ZipFile(path) as archive:
            members = archive.infolist()
    except (zipfile.BadZipFile, OSError) as exc:
        skipped.append(Skipped(name, f"unreadable ZIP: {exc}"))
        return
    resolved = path.resolve()
    for info in members:
        if info.is_dir() or info.filename.startswith("__MACOSX/") or info.file_size == 0:
            continue
        yield Source(
            path=path,
            member=info.filename,
            size=info.file_size,
            name=f"{name}/{info.filename}",
            fingerprint=f"{resolved}!{info.filename}|{info.file_size}|{info.CRC}",
        )


def collect_sources(
    paths: Iterable[Path], root: Path | None = None
) -> tuple[list[Source], list[Skipped]]:
    """Every file under ``paths`` (recursively), with ZIP archives opened into their members.

    Names sent to the server are relative to the folder given (or to ``root``).
    """
    sources: list[Source] = []
    skipped: list[Skipped] = []
    seen: set[str] = set()

    def add_file(path: Path, root: Path) -> None:
        try:
            stat = path.stat()
        except OSError as exc:
            skipped.append(Skipped(str(path), f"unreadable: {exc.strerror}"))
            return
        name = _display_name(path, root)
        if _is_zip(path):
            for source in _zip_sources(path, name, skipped):
                if source.fingerprint not in seen:
                    seen.add(source.fingerprint)
                    sources.append(source)
            return
        if stat.st_size == 0:
            skipped.append(Skipped(name, "empty file"))
            return
        fingerprint = _file_fingerprint(path, stat)
        if fingerprint not in seen:
            seen.add(fingerprint)
            sources.append(
                Source(path, None, stat.st_size, name, fingerprint, mtime_ns=stat.st_mtime_ns)
            )

    for given in paths:
        if given.is_dir():
            for path in sorted(p for p in given.rglob("*") if p.is_file()):
                add_file(path, root or given)
        elif given.is_file():
            add_file(given, root or given.parent)
        else:
            skipped.append(Skipped(str(given), "no such file or folder"))
    return sources, skipped


def _text(dataset: pydicom.Dataset, keyword: str) -> str:
    value = dataset.get(keyword)
    return "" if value is None else str(value).strip()


def _dicom_date(value: str) -> date | None:
    if len(value) >= 8 and value[:8].isdigit():
        try:
            return date(int(value[:4]), int(value[4:6]), int(value[6:8]))
        except ValueError:
            return None
    return None


def read_instance(source: Source) -> Instance | Skipped:
    """Read one file's header; never raises for bad input, returns why it was skipped instead."""
    # Imported here: pydicom takes most of a second to import and `status` never needs it.
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        with source.open() as stream:
            try:
                dataset = pydicom.dcmread(
                    stream, stop_before_pixels=True, specific_tags=HEADER_TAGS
                )
            except InvalidDicomError:
                # Old files without the 128-byte preamble: accept them only if UIDs come out.
                stream.seek(0)
                dataset = pydicom.dcmread(
                    stream, stop_before_pixels=True, specific_tags=HEADER_TAGS, force=True
                )
    except Exception as exc:  # pydicom raises many types on garbage; each means "not DICOM"
        return Skipped(source.name, f"not DICOM ({type(exc).__name__})")
    file_meta = getattr(dataset, "file_meta", None)
    media_class = str(getattr(file_meta, "MediaStorageSOPClassUID", "") or "")
    if media_class == DICOMDIR_SOP_CLASS:
        return Skipped(source.name, "DICOMDIR (an index of the media, not an instance)")
    try:
        study_uid = _text(dataset, "StudyInstanceUID")
        series_uid = _text(dataset, "SeriesInstanceUID")
        sop_uid = _text(dataset, "SOPInstanceUID")
    except Exception:
        return Skipped(source.name, "not DICOM (unreadable header)")
    if not (study_uid and series_uid and sop_uid):
        if not file_meta:
            return Skipped(source.name, "not DICOM")
        return Skipped(source.name, "not a DICOM instance (no Study/Series/SOP Instance UID)")
    study_date = None
    for keyword in ("StudyDate", "SeriesDate", "AcquisitionDate", "ContentDate"):
        study_date = _dicom_date(_text(dataset, keyword))
        if study_date is not None:
            break
    return Instance(
        source=source,
        study_instance_uid=study_uid,
        series_instance_uid=series_uid,
        sop_instance_uid=sop_uid,
        patient_name=_text(dataset, "PatientName"),
        patient_id=_text(dataset, "PatientID"),
        study_date=study_date,
        modality=_text(dataset, "Modality").upper(),
        study_description=_text(dataset, "StudyDescription"),
    )


def read_instances(sources: list[Source], threads: int = 8) -> list[Instance | Skipped]:
    if not sources:
        return []
    with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="dicom-header") as pool:
        return list(pool.map(read_instance, sources))


def group_studies(sources: list[Source], skipped: list[Skipped], threads: int = 8) -> ScanResult:
    return group_instances(read_instances(sources, threads), skipped)


def group_instances(results: list[Instance | Skipped], skipped: list[Skipped]) -> ScanResult:
    by_study: dict[str, Study] = {}
    seen_sop: set[tuple[str, str]] = set()
    all_skipped = list(skipped)
    for result in results:
        if isinstance(result, Skipped):
            all_skipped.append(result)
            continue
        key = (result.study_instance_uid, result.sop_instance_uid)
        if key in seen_sop:
            all_skipped.append(Skipped(result.source.name, "same SOP Instance UID given twice"))
            continue
        seen_sop.add(key)
        by_study.setdefault(result.study_instance_uid, Study(result.study_instance_uid))
        by_study[result.study_instance_uid].instances.append(result)
    return ScanResult(studies=list(by_study.values()), skipped=all_skipped)


def scan(paths: Iterable[Path], threads: int = 8) -> ScanResult:
    sources, skipped = collect_sources(paths)
    return group_studies(sources, skipped, threads)
