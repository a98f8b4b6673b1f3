"""Errors of reports."""

from __future__ import annotations

from relaypacs.errors import BadRequest, Conflict, NotFound, ServiceUnavailable


class ReportNotFound(NotFound):
    code = "report_not_found"
    title = "No such report"


class ReportNotReady(Conflict):
    code = "report_not_ready"
    title = "The report is not ready yet"


class MessageRequired(BadRequest):
    code = "message_required"
    title = "Say what additional data is needed (message)"


class ReportTextRequired(BadRequest):
    code = "report_text_required"
    title = "A ready report needs its text"


class PacsUnavailable(ServiceUnavailable):
    code = "pacs_unavailable"
    title = "The PACS could not be asked"
