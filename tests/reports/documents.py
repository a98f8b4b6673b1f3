"""Report documents as a PACS would hold them: a Comprehensive SR built with highdicom and an
Encapsulated PDF, both belonging to an existing study."""

from __future__ import annotations

import io
from datetime import date

import highdicom as hd
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import EncapsulatedPDFStorage, ExplicitVRLittleEndian, generate_uid

from tests.support.dicom_studies import instance

PATIENT_ID = "RPT-0001"


def ct_image(study_uid: str, series_uid: str) -> bytes:
    return instance(
        patient_name="TEST^REPORT",
        patient_id=PATIENT_ID,
        study_uid=study_uid,
        series_uid=series_uid,
        study_date=date(2024, 5, 17),
    )


def structured_report(
    evidence: bytes, *, findings: str, impression: str, radiologist: str
) -> bytes:
    """A Comprehensive SR (verified) whose content tree holds the findings and impression."""
    image = pydicom.dcmread(io.BytesIO(evidence))
    # The SR copies the Patient and General Study modules from its evidence.
    for keyword, value in (
        ("PatientBirthDate", ""),
        ("PatientSex", ""),
        ("StudyTime", "120000"),
        ("StudyID", "1"),
        ("AccessionNumber", ""),
        ("ReferringPhysicianName", ""),
    ):
        if keyword not in image:
            setattr(image, keyword, value)
    root = hd.sr.ContainerContentItem(
        name=hd.sr.CodedConcept("18748-4", "LN", "Diagnostic imaging report")
    )
    sections = []
    for code, meaning, text in (
        ("121070", "Findings", findings),
        ("121072", "Impressions", impression),
    ):
        section = hd.sr.ContainerContentItem(
            name=hd.sr.CodedConcept(code, "DCM", meaning),
            relationship_type=hd.sr.RelationshipTypeValues.CONTAINS,
        )
        section.ContentSequence = hd.sr.ContentSequence(
            [
                hd.sr.TextContentItem(
                    name=hd.sr.CodedConcept("121071", "DCM", "Finding"),
                    value=text,
                    relationship_type=hd.sr.RelationshipTypeValues.CONTAINS,
                )
            ],
            is_root=False,
        )
        sections.append(section)
    root.ContentSequence = hd.sr.ContentSequence(sections, is_root=False)
    report = hd.sr.ComprehensiveSR(
        evidence=[image],
        content=root,
        series_instance_uid=generate_uid(),
        series_number=99,
        sop_instance_uid=generate_uid(),
        instance_number=1,
        manufacturer="Reading Centre",
        is_complete=True,
        is_final=True,
        is_verified=True,
        verifying_observer_name=radiologist,
        verifying_organization="Reading Centre",
    )
    buffer = io.BytesIO()
    report.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def encapsulated_pdf(study_uid: str, pdf: bytes) -> bytes:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = EncapsulatedPDFStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = EncapsulatedPDFStorage
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = generate_uid()
    ds.PatientName = "TEST^REPORT"
    ds.PatientID = PATIENT_ID
    ds.Modality = "DOC"
    ds.SeriesNumber = 100
    ds.InstanceNumber = 1
    ds.MIMETypeOfEncapsulatedDocument = "application/pdf"
    ds.DocumentTitle = "Radiology report"
    ds.BurnedInAnnotation = "YES"
    ds.EncapsulatedDocument = pdf + (b"\x00" if len(pdf) % 2 else b"")
    buffer = io.BytesIO()
    pydicom.dcmwrite(buffer, ds, enforce_file_format=True)
    return buffer.getvalue()


def uids_of(data: bytes) -> tuple[str, str, str, str]:
    """(study, series, SOP instance, SOP class) UIDs of a Part 10 file."""
    ds = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True)
    return (
        str(ds.StudyInstanceUID),
        str(ds.SeriesInstanceUID),
        str(ds.SOPInstanceUID),
        str(ds.SOPClassUID),
    )
