"""The report as a PDF (ReportLab), for studies whose PACS has no PDF of its own."""

from __future__ import annotations

import io
from datetime import datetime
from xml.sax.saxutils import escape

from reportlab.lib import colors
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import ParagraphStyle, PropertySet, getSampleStyleSheet
from reportlab.lib.units import mm
from reportlab.platypus import Flowable, Paragraph, SimpleDocTemplate, Spacer, Table, TableStyle

from relaypacs.reports.models import Report
from relaypacs.uploads.models import Upload


def _when(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M UTC") if value else "-"


def _person(name: str) -> str:
    # DICOM PN order Family^Given^Middle^Prefix^Suffix, as a reader expects to see it.
    family, given, middle, prefix, suffix = ([*name.split("=")[0].split("^"), "", "", "", ""])[:5]
    rest = " ".join(p for p in (prefix, given, middle, suffix) if p)
    return f"{family}, {rest}" if family and rest else family or rest or name


def _report_text(text: str, body: PropertySet) -> list[Flowable]:
    """One flowable per line: a paragraph that runs over a page is split and laid out again
    for every page, so a single flowable of thousands of lines costs time quadratic in them."""
    line_style = ParagraphStyle("ReportLine", parent=body, spaceBefore=0, spaceAfter=0)
    flowables: list[Flowable] = []
    for paragraph in text.split("\n\n"):
        lines = paragraph.strip().splitlines()
        if lines:
            # A blank line inside a paragraph stays visible, as it was typed.
            flowables.extend(
                Paragraph(escape(line) if line.strip() else "&#160;", line_style) for line in lines
            )
            flowables.append(Spacer(1, 3 * mm))
    return flowables


def render_report_pdf(report: Report, upload: Upload) -> bytes:
    """Blocking (ReportLab): call from a thread."""
    buffer = io.BytesIO()
    document = SimpleDocTemplate(
        buffer,
        pagesize=A4,
        leftMargin=20 * mm,
        rightMargin=20 * mm,
        topMargin=18 * mm,
        bottomMargin=18 * mm,
        title="Radiology report",
        author=report.radiologist_name or "RelayPACS",
        creator="RelayPACS",
    )
    styles = getSampleStyleSheet()
    details = [
        ("Patient", _person(upload.patient_name)),
        ("Patient ID", upload.patient_id or "-"),
        ("Study date", upload.study_date.isoformat()),
        ("Modality", upload.modality),
        ("Description", upload.study_description or "-"),
        ("Service level", upload.service_level.value.upper()),
        ("Study Instance UID", report.study_instance_uid or "-"),
        ("Uploaded", _when(upload.created_at)),
        ("Delivered to the PACS", _when(report.delivered_at)),
        ("Report ready", _when(report.ready_at)),
        ("Radiologist", report.radiologist_name or "-"),
    ]
    table = Table(
        [
            [Paragraph(escape(k), styles["Normal"]), Paragraph(escape(v), styles["Normal"])]
            for k, v in details
        ],
        colWidths=[50 * mm, 120 * mm],
    )
    table.setStyle(
        TableStyle(
            [
                ("GRID", (0, 0), (-1, -1), 0.25, colors.grey),
                ("BACKGROUND", (0, 0), (0, -1), colors.whitesmoke),
                ("VALIGN", (0, 0), (-1, -1), "TOP"),
            ]
        )
    )
    story = [Paragraph("Radiology report", styles["Title"]), table, Spacer(1, 8 * mm)]
    story.append(Paragraph("Report", styles["Heading2"]))
    story.extend(_report_text(report.text or "", styles["BodyText"]))
    story.append(Spacer(1, 6 * mm))
    story.append(
        Paragraph(
            escape(f"Reported by {report.radiologist_name or '-'}, {_when(report.ready_at)}"),
            styles["Italic"],
        )
    )
    document.build(story)
    return buffer.getvalue()
