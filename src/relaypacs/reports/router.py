"""HTTP layer of reports: list, read, PDF, radiologists' changes, PACS sync."""

from __future__ import annotations

from typing import Annotated

import anyio.to_thread
from fastapi import APIRouter, Depends, Query, Request, Response

from relaypacs.auth.dependencies import AUTH_ERRORS, ROLE_ERRORS, CurrentUser, require_roles
from relaypacs.db.session import SessionDep
from relaypacs.errors import IdPath, parse_id, problem_responses
from relaypacs.reports import service
from relaypacs.reports.exceptions import (
    MessageRequired,
    PacsUnavailable,
    ReportNotFound,
    ReportNotReady,
    ReportTextRequired,
)
from relaypacs.reports.models import ReportStatus
from relaypacs.reports.pacs import ReportSource, report_sources
from relaypacs.reports.pdf import render_report_pdf
from relaypacs.reports.schemas import ReportOut, ReportPage, ReportUpdate
from relaypacs.resources import Resources
from relaypacs.users.models import Role, User
from relaypacs.users.service import register_export_section

router = APIRouter(prefix="/reports", tags=["reports"])

register_export_section("reports", service.export_section)

RadiologistUser = Annotated[User, Depends(require_roles(Role.radiologist, Role.admin))]


def _resources(request: Request) -> Resources:
    resources: Resources = request.app.state.resources
    return resources


def _sources(request: Request) -> list[ReportSource]:
    return report_sources(_resources(request).pacs)


@router.get(
    "",
    response_model=ReportPage,
    summary="Reports: your own (radiologists and admins: all), newest first",
    responses=problem_responses(*AUTH_ERRORS),
)
async def list_reports(
    request: Request,
    user: CurrentUser,
    session: SessionDep,
    status: ReportStatus | None = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> ReportPage:
    rows, total = await service.list_reports(
        session, user, status=status, limit=limit, offset=offset
    )
    # Which reports were seen, so that "who saw this report" has an answer (promise 7).
    seen = {"count": len(rows), "ids": [str(r.id) for r, _ in rows]}
    await service.audit_read(session, request, user, "report.listed", None, seen)
    await session.commit()
    return ReportPage(
        items=[service.summary(r, u) for r, u in rows], total=total, limit=limit, offset=offset
    )


@router.get(
    "/{report_id}",
    response_model=ReportOut,
    summary="One report",
    responses=problem_responses(*AUTH_ERRORS, ReportNotFound),
)
async def get_report(
    report_id: IdPath, request: Request, user: CurrentUser, session: SessionDep
) -> ReportOut:
    report, upload = await service.get_visible(session, user, parse_id(report_id, ReportNotFound))
    await service.audit_read(session, request, user, "report.viewed", report.id)
    await session.commit()
    return service.detail(report, upload)


@router.get(
    "/{report_id}/pdf",
    summary="The report as PDF: the PACS's own when it has one, else one made here",
    response_class=Response,
    responses={
        200: {"content": {"application/pdf": {"schema": {"type": "string", "format": "binary"}}}},
        **problem_responses(*AUTH_ERRORS, ReportNotFound, ReportNotReady, PacsUnavailable),
    },
)
async def get_report_pdf(
    report_id: IdPath, request: Request, user: CurrentUser, session: SessionDep
) -> Response:
    report, upload = await service.get_visible(session, user, parse_id(report_id, ReportNotFound))
    service.ensure_ready(report)
    # No transaction stays open while the PACS answers.
    await session.commit()
    content = await service.pacs_pdf(report, _sources(request))
    origin = "pacs"
    if content is None:
        origin = "generated"
        content = await anyio.to_thread.run_sync(render_report_pdf, report, upload)
    await service.audit_read(
        session, request, user, "report.pdf_downloaded", report.id, {"origin": origin}
    )
    await session.commit()
    return Response(
        content,
        media_type="application/pdf",
        headers={
            "Content-Disposition": f'attachment; filename="report-{report.id}.pdf"',
            "Cache-Control": "no-store",
        },
    )


@router.patch(
    "/{report_id}",
    response_model=ReportOut,
    summary="Set a report pending, ask for more data, or make it ready (radiologists, admins)",
    responses=problem_responses(*ROLE_ERRORS, ReportNotFound, MessageRequired, ReportTextRequired),
)
async def update_report(
    report_id: IdPath,
    body: ReportUpdate,
    request: Request,
    radiologist: RadiologistUser,
    session: SessionDep,
) -> ReportOut:
    report, upload = await service.update_report(
        session, radiologist, parse_id(report_id, ReportNotFound), body, request=request
    )
    await session.commit()
    return service.detail(report, upload)


@router.post(
    "/{report_id}/sync",
    response_model=ReportOut,
    summary="Ask the PACS for this study's report now",
    responses=problem_responses(*AUTH_ERRORS, ReportNotFound, PacsUnavailable),
)
async def sync_report(
    report_id: IdPath, request: Request, user: CurrentUser, session: SessionDep
) -> ReportOut:
    report, upload = await service.sync_now(
        session,
        user,
        parse_id(report_id, ReportNotFound),
        _sources(request),
        _resources(request).settings,
        request=request,
    )
    await session.commit()
    return service.detail(report, upload)
