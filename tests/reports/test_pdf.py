"""The report PDF made by RelayPACS (ReportLab), without a database: its text and its cost."""

from __future__ import annotations

import io
from datetime import UTC, date, datetime
from unittest import mock

import reportlab.platypus.paragraph as reportlab_paragraph
from pypdf import PdfReader

from relaypacs.reports.models import Report
from relaypacs.reports.pdf import render_report_pdf
from relaypacs.uploads.models import Upload
from relaypacs.users.models import ServiceLevel


def _report(text: str) -> tuple[Report, Upload]:
    upload = Upload(
        patient_name="DOE^JANE",
        patient_id="P-1",
        study_date=date(2024, 5, 17),
        modality="CT",
        study_description="CT HEAD",
        service_level=ServiceLevel.routine,
        created_at=datetime(2024, 5, 17, 9, 0, tzinfo=UTC),
    )
    report = Report(
        text=text,
        radiologist_name="SMITH^ANNA",
        study_instance_uid="1.2.3",
        delivered_at=None,
        ready_at=datetime(2024, 5, 17, 10, 0, tzinfo=UTC),
    )
    return report, upload


def _text_of(pdf: bytes) -> str:
    return "\n".join(page.extract_text() for page in PdfReader(io.BytesIO(pdf)).pages)


def test_a_report_over_many_pages_keeps_every_line_in_order() -> None:
    lines = [f"Finding number {n}." for n in range(400)]
    text = "\n".join(lines[:200]) + "\n\n" + "\n".join(lines[200:])
    pdf = render_report_pdf(*_report(text))
    assert len(PdfReader(io.BytesIO(pdf)).pages) > 3
    extracted = _text_of(pdf)
    positions = [extracted.index(line + "\n") for line in lines]
    assert positions == sorted(positions)


def _width_measurements(text: str) -> int:
    """How many text widths ReportLab measures to lay the report out: a count of its work."""
    counted = 0
    measure = reportlab_paragraph.stringWidth

    def counting(*args: object, **kwargs: object) -> float:
        nonlocal counted
        counted += 1
        return measure(*args, **kwargs)  # type: ignore[arg-type]

    with mock.patch.object(reportlab_paragraph, "stringWidth", counting):
        render_report_pdf(*_report(text))
    return counted


def test_laying_out_a_report_costs_work_linear_in_its_lines() -> None:
    """A report of 20,000 short lines (within the 100,000-character limit) once took minutes:
    one paragraph split at every page is laid out again for each page, quadratic in lines."""
    small = _width_measurements("A short line.\n" * 1000)
    large = _width_measurements("A short line.\n" * 2000)
    assert large < 2.5 * small, (small, large)
