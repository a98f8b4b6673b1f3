"""Finding a study's report in the PACS: QIDO-RS to list, WADO-RS to retrieve, pydicom to read.

A report is an instance the gateway did not upload whose SOP Class is a Structured Report
(Basic Text, Enhanced or Comprehensive SR, PS3.3 A.35) or an Encapsulated PDF (PS3.3 A.45.1).
From an SR come the radiologist (VerifyingObserverName, else the Person Observer Name of the
content tree, else AuthorObserverSequence) and the text (the content tree rendered as headed
paragraphs). Network and parse failures raise :class:`ReportSourceError` with a reason built
from status codes and exception types only.
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import anyio.to_thread
import pydicom
import structlog
from pydicom.dataset import Dataset

from relaypacs.pacs.destinations import PacsDestinations
from relaypacs.pacs.destinations.archive import ArchiveDestination
from relaypacs.pacs.destinations.dicomweb import DicomWebDestination
from relaypacs.pacs.exceptions import DestinationError

BASIC_TEXT_SR = "1.2.840.10008.5.1.4.1.1.88.11"
ENHANCED_SR = "1.2.840.10008.5.1.4.1.1.88.22"
COMPREHENSIVE_SR = "1.2.840.10008.5.1.4.1.1.88.33"
ENCAPSULATED_PDF = "1.2.840.10008.5.1.4.1.1.104.1"
SR_CLASSES = frozenset({BASIC_TEXT_SR, ENHANCED_SR, COMPREHENSIVE_SR})
REPORT_CLASSES = SR_CLASSES | {ENCAPSULATED_PDF}
#: Series of these modalities are searched even when the gateway uploaded them.
_REPORT_MODALITIES = frozenset({"SR", "DOC"})

_SERIES_UID = "0020000E"
_SOP_CLASS_UID = "00080016"
_SOP_INSTANCE_UID = "00080018"
_MODALITY = "00080060"
# Person Observer Name (DCM 121008), the usual home of the author in an SR content tree.
_PERSON_OBSERVER_NAME = "121008"

log = structlog.get_logger(__name__)


class ReportSourceError(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class InstanceRef:
    study_instance_uid: str
    series_instance_uid: str
    sop_instance_uid: str
    sop_class_uid: str


@dataclass(frozen=True)
class FoundReport:
    destination: str
    structured_report: InstanceRef | None
    pdf: InstanceRef | None
    radiologist: str | None
    text: str | None


class ReportSource(Protocol):
    @property
    def name(self) -> str: ...

    async def report_instances(
        self, study_instance_uid: str, uploaded_series: frozenset[str]
    ) -> list[InstanceRef]:
        """Instances of a report SOP class in series the gateway did not upload (or SR/DOC)."""

    async def retrieve(self, ref: InstanceRef) -> bytes:
        """The instance's Part 10 bytes."""


# --- DICOMweb ----------------------------------------------------------------------------------


class DicomWebReportSource:
    """Reports in a DICOMweb destination, read through its public QIDO-RS / WADO-RS methods
    (so with its authentication and TLS settings)."""

    def __init__(self, name: str, destination: DicomWebDestination) -> None:
        self._name = name
        self.destination = destination

    @property
    def name(self) -> str:
        return self._name

    async def report_instances(
        self, study_instance_uid: str, uploaded_series: frozenset[str]
    ) -> list[InstanceRef]:
        try:
            series = await self.destination.search_series(
                study_instance_uid, include=[_SERIES_UID, _MODALITY]
            )
        except DestinationError as exc:
            raise ReportSourceError(exc.reason) from exc
        found: list[InstanceRef] = []
        for item in series:
            series_uid = _value(item, _SERIES_UID)
            if not isinstance(series_uid, str):
                continue
            if series_uid in uploaded_series and _value(item, _MODALITY) not in _REPORT_MODALITIES:
                continue
            try:
                instances = await self.destination.search_instances(
                    study_instance_uid, series_uid, include=[_SOP_CLASS_UID, _SOP_INSTANCE_UID]
                )
            except DestinationError as exc:
                raise ReportSourceError(exc.reason) from exc
            for instance in instances:
                sop_class = _value(instance, _SOP_CLASS_UID)
                sop_uid = _value(instance, _SOP_INSTANCE_UID)
                if isinstance(sop_uid, str) and sop_class in REPORT_CLASSES:
                    found.append(
                        InstanceRef(study_instance_uid, series_uid, sop_uid, str(sop_class))
                    )
        return found

    async def retrieve(self, ref: InstanceRef) -> bytes:
        try:
            return await self.destination.retrieve_instance(
                ref.study_instance_uid, ref.series_instance_uid, ref.sop_instance_uid
            )
        except DestinationError as exc:
            raise ReportSourceError(exc.reason) from exc


def _value(item: dict[str, Any], tag: str) -> object:
    element = item.get(tag)
    if isinstance(element, dict):
        values = element.get("Value")
        if isinstance(values, list) and values:
            return values[0]
    return None


# --- the local archive ---------------------------------------------------------------------------


class ArchiveReportSource:
    """Reports dropped into the local archive (``<root>/<study>/<series>/<sop>.dcm``)."""

    def __init__(self, name: str, root: Path) -> None:
        self._name = name
        self.root = root

    @property
    def name(self) -> str:
        return self._name

    async def report_instances(
        self, study_instance_uid: str, uploaded_series: frozenset[str]
    ) -> list[InstanceRef]:
        return await anyio.to_thread.run_sync(self._scan, study_instance_uid, uploaded_series)

    def _scan(self, study_uid: str, uploaded_series: frozenset[str]) -> list[InstanceRef]:
        study = self.root / study_uid
        if not _safe_uid(study_uid) or not study.is_dir():
            return []
        found: list[InstanceRef] = []
        for path in sorted(study.glob("*/*.dcm")):
            try:
                header = pydicom.dcmread(
                    path,
                    stop_before_pixels=True,
                    specific_tags=[
                        "SOPClassUID",
                        "SOPInstanceUID",
                        "SeriesInstanceUID",
                        "Modality",
                    ],
                )
            except Exception as exc:
                # A damaged file is no report we can read (pydicom raises many kinds on one).
                log.warning("archive_instance_unreadable", error=type(exc).__name__)
                continue
            series_uid = str(header.get("SeriesInstanceUID", ""))
            sop_class = str(header.get("SOPClassUID", ""))
            if sop_class not in REPORT_CLASSES:
                continue
            if series_uid in uploaded_series and header.get("Modality") not in _REPORT_MODALITIES:
                continue
            found.append(
                InstanceRef(study_uid, series_uid, str(header.get("SOPInstanceUID", "")), sop_class)
            )
        return found

    async def retrieve(self, ref: InstanceRef) -> bytes:
        uids = (ref.study_instance_uid, ref.series_instance_uid, ref.sop_instance_uid)
        if not all(_safe_uid(uid) for uid in uids):
            raise ReportSourceError("not a valid UID")
        path = self.root.joinpath(*uids[:2], f"{uids[2]}.dcm")
        try:
            return await anyio.to_thread.run_sync(path.read_bytes)
        except OSError as exc:
            raise ReportSourceError(f"archive read failed ({type(exc).__name__})") from exc


def _safe_uid(uid: str) -> bool:
    # UIDs are digits and dots (PS3.5 9.1); anything else must never become a path.
    return bool(re.fullmatch(r"[0-9.]{1,64}", uid))


def report_sources(pacs: PacsDestinations) -> list[ReportSource]:
    sources: list[ReportSource] = []
    for guarded in pacs.destinations:
        inner = guarded.destination
        if isinstance(inner, DicomWebDestination):
            sources.append(DicomWebReportSource(guarded.name, inner))
        elif isinstance(inner, ArchiveDestination):
            sources.append(ArchiveReportSource(guarded.name, inner.root))
    return sources


# --- reading a report ----------------------------------------------------------------------------


async def find_report(
    sources: Sequence[ReportSource],
    study_instance_uids: Iterable[str],
    *,
    uploaded_series: frozenset[str],
    uploaded_instances: frozenset[str],
) -> FoundReport | None:
    """The newest SR (and any PDF) of the study in the first destination that has one.

    Raises :class:`ReportSourceError` when no destination could be asked at all.
    """
    errors: list[str] = []
    asked = 0
    for source in sources:
        for study_uid in study_instance_uids:
            try:
                refs = await source.report_instances(study_uid, uploaded_series)
            except ReportSourceError as exc:
                errors.append(f"{source.name}: {exc.reason}")
                continue
            asked += 1
            refs = [r for r in refs if r.sop_instance_uid not in uploaded_instances]
            if refs:
                return await _read(source, refs)
    if errors and not asked:
        raise ReportSourceError("; ".join(errors)[:300])
    return None


async def _read(source: ReportSource, refs: list[InstanceRef]) -> FoundReport:
    pdf = next((r for r in refs if r.sop_class_uid == ENCAPSULATED_PDF), None)
    best: tuple[str, InstanceRef, Dataset] | None = None
    for ref in refs:
        if ref.sop_class_uid not in SR_CLASSES:
            continue
        dataset = await anyio.to_thread.run_sync(read_dataset, await source.retrieve(ref))
        # Newest content wins (an addendum replaces the preliminary report).
        when = f"{dataset.get('ContentDate', '')}{dataset.get('ContentTime', '')}"
        if best is None or when >= best[0]:
            best = (when, ref, dataset)
    if best is None:
        return FoundReport(source.name, None, pdf, None, None)
    _, ref, dataset = best
    try:
        radiologist, text = radiologist_of(dataset), render_text(dataset) or None
    except Exception as exc:  # a damaged SR fails wherever pydicom decodes a value lazily
        raise ReportSourceError(f"unreadable report instance ({type(exc).__name__})") from exc
    return FoundReport(source.name, ref, pdf, radiologist, text)


def read_dataset(data: bytes) -> Dataset:
    try:
        return pydicom.dcmread(io.BytesIO(data), force=True)
    except Exception as exc:
        # Whatever the PACS holds is outside our control, and pydicom raises many kinds on a
        # damaged file (OSError, struct.error, NotImplementedError, ...): each is this report's
        # problem, never the sync run's.
        raise ReportSourceError(f"unreadable report instance ({type(exc).__name__})") from exc


def encapsulated_pdf(data: bytes) -> bytes:
    dataset = read_dataset(data)
    document = dataset.get("EncapsulatedDocument")
    if not isinstance(document, bytes) or not document.startswith(b"%PDF"):
        raise ReportSourceError("the PACS instance holds no PDF")
    # The value is padded to an even length with one NUL (PS3.3 C.24.2.1).
    return document.rstrip(b"\x00")


def _person_name(value: object) -> str | None:
    text = str(value or "").strip()
    if not text:
        return None
    # DICOM PN: Family^Given^Middle^Prefix^Suffix -> "Prefix Given Middle Family Suffix".
    family, given, middle, prefix, suffix = ([*text.split("=")[0].split("^"), "", "", "", ""])[:5]
    return " ".join(p for p in (prefix, given, middle, family, suffix) if p) or None


def radiologist_of(dataset: Dataset) -> str | None:
    for item in dataset.get("VerifyingObserverSequence", []):
        name = _person_name(item.get("VerifyingObserverName"))
        if name:
            return name
    for item in _walk(dataset.get("ContentSequence", [])):
        concept = item.get("ConceptNameCodeSequence")
        if (
            item.get("ValueType") == "PNAME"
            and concept
            and concept[0].get("CodeValue") == _PERSON_OBSERVER_NAME
        ):
            name = _person_name(item.get("PersonName"))
            if name:
                return name
    for item in dataset.get("AuthorObserverSequence", []):
        name = _person_name(item.get("PersonName"))
        if name:
            return name
    return None


def _walk(items: Iterable[Dataset]) -> Iterable[Dataset]:
    for item in items:
        yield item
        yield from _walk(item.get("ContentSequence", []))


def _meaning(item: Dataset) -> str:
    concept = item.get("ConceptNameCodeSequence")
    return str(concept[0].get("CodeMeaning", "")) if concept else ""


def render_text(dataset: Dataset) -> str:
    """The SR content tree as text: containers become headings, values become lines."""
    lines: list[str] = []

    def visit(items: Iterable[Dataset], depth: int) -> None:
        for item in items:
            value_type = item.get("ValueType")
            meaning = _meaning(item)
            if value_type == "CONTAINER":
                if depth > 0 and meaning:
                    lines.append("")
                    lines.append(f"{meaning}:")
                visit(item.get("ContentSequence", []), depth + 1)
                continue
            if value_type == "TEXT":
                lines.append(str(item.get("TextValue", "")).strip())
            elif value_type == "CODE":
                code = item.get("ConceptCodeSequence")
                if code:
                    lines.append(f"{meaning}: {code[0].get('CodeMeaning', '')}")
            elif value_type == "NUM":
                measured = item.get("MeasuredValueSequence")
                if measured:
                    value = measured[0].get("NumericValue", "")
                    units = measured[0].get("MeasurementUnitsCodeSequence")
                    unit = units[0].get("CodeValue", "") if units else ""
                    lines.append(f"{meaning}: {value} {unit}".rstrip())
            visit(item.get("ContentSequence", []), depth + 1)

    visit([dataset], 0)
    return "\n".join(lines).strip()
