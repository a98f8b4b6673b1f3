"""HTTP layer of analytics (``/analytics``) and of the admin's view of uploads
(``/admin/uploads``)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, status
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import AwareDatetime

from relaypacs.analytics import repository, service
from relaypacs.analytics.cache import FigureCache
from relaypacs.analytics.exceptions import UploadNotFound, UploadNotRequeueable
from relaypacs.analytics.repository import Filters
from relaypacs.analytics.schemas import (
    AdminUploadPage,
    AdminUploadSummary,
    Period,
    Requeued,
    Scope,
    Summary,
    Trends,
)
from relaypacs.audit.service import record_audit
from relaypacs.auth.dependencies import ROLE_ERRORS, AdminUser, CurrentUser
from relaypacs.db.session import SessionDep, get_sessionmaker
from relaypacs.errors import IdPath, TooManyRequests, parse_id, problem_responses
from relaypacs.jobs.exceptions import JobAlreadyQueued, JobNotRequeueable
from relaypacs.operations import metrics
from relaypacs.resources import Resources
from relaypacs.uploads.models import UploadState
from relaypacs.users.models import ServiceLevel, User
from relaypacs.users.service import register_export_section

router = APIRouter(prefix="/analytics", tags=["analytics"])
admin_router = APIRouter(prefix="/admin/uploads", tags=["admin"])

register_export_section("uploads", service.export_uploads_section)

PeriodQuery = Annotated[Period, Query(description="1w, 2w, 1m (30 days), 3m, 6m or all")]
UserQuery = Annotated[uuid.UUID | None, Query(description="Admins: one user's figures")]
ModalityQuery = Annotated[str | None, Query(max_length=16, pattern=r"^[A-Za-z0-9]+$")]


@dataclass(frozen=True, slots=True)
class FigureQuery:
    """The query parameters every figure route shares."""

    period: Period
    user_id: uuid.UUID | None
    modality: str | None
    service_level: ServiceLevel | None

    def scope_for(self, user: User) -> tuple[Scope, Filters]:
        return service.scope_for(
            user,
            self.period,
            user_id=self.user_id,
            modality=self.modality,
            service_level=self.service_level,
        )


def _figure_query(
    period: PeriodQuery = Period.one_month,
    user_id: UserQuery = None,
    modality: ModalityQuery = None,
    service_level: ServiceLevel | None = None,
) -> FigureQuery:
    return FigureQuery(period, user_id, modality, service_level)


FigureQueryDep = Annotated[FigureQuery, Depends(_figure_query)]


def _cache(request: Request) -> FigureCache:
    cache: FigureCache = request.app.state.analytics_cache
    return cache


async def _limit(request: Request, user: User) -> None:
    resources: Resources = request.app.state.resources
    await resources.rate_limiter.hit(
        resources.settings.analytics_rate_limit, "analytics", str(user.id)
    )


@router.get(
    "/summary",
    response_model=Summary,
    summary="Uploads, outcomes, modalities, service levels and times to the PACS for a period",
    responses=problem_responses(*ROLE_ERRORS, TooManyRequests),
)
async def get_summary(
    request: Request,
    user: CurrentUser,
    session: SessionDep,
    query: FigureQueryDep,
) -> Summary:
    await _limit(request, user)
    scope, filters = query.scope_for(user)
    # The figures come from sessions of their own; this one (authentication) is done.
    await session.commit()
    sessionmaker = get_sessionmaker(request)
    result: Summary = await _cache(request).get(
        service.cache_key("summary", scope),
        lambda: service.summary(sessionmaker, scope, filters),
    )
    return result


@router.get(
    "/trends",
    response_model=Trends,
    summary="Daily volume, delivered vs failed and modalities, zero-filled",
    responses=problem_responses(*ROLE_ERRORS, TooManyRequests),
)
async def get_trends(
    request: Request,
    user: CurrentUser,
    session: SessionDep,
    query: FigureQueryDep,
) -> JSONResponse:
    await _limit(request, user)
    scope, filters = query.scope_for(user)
    await session.commit()
    sessionmaker = get_sessionmaker(request)
    series = await _cache(request).get(
        service.cache_key("trends", scope),
        lambda: service.trends(sessionmaker, scope, filters),
    )
    return JSONResponse(series)


@router.get(
    "/export.csv",
    summary="One row per upload of the period, as CSV (admins; spreadsheet-safe)",
    response_class=StreamingResponse,
    responses={
        200: {"content": {"text/csv": {"schema": {"type": "string"}}}},
        **problem_responses(*ROLE_ERRORS, TooManyRequests),
    },
)
async def export_csv(
    request: Request,
    admin: AdminUser,
    session: SessionDep,
    query: FigureQueryDep,
) -> StreamingResponse:
    await _limit(request, admin)
    _, filters = query.scope_for(admin)
    await record_audit(
        session,
        "analytics.exported",
        request=request,
        actor_id=admin.id,
        details={
            "period": query.period.value,
            "user_id": str(query.user_id) if query.user_id else None,
        },
    )
    await session.commit()
    filename = f"relaypacs_stats_{query.period.value}.csv"
    return StreamingResponse(
        service.export_csv(get_sessionmaker(request), filters),
        media_type="text/csv; charset=utf-8",
        headers={
            "Content-Disposition": f'attachment; filename="{filename}"',
            "Cache-Control": "no-store",
        },
    )


@admin_router.get(
    "",
    response_model=AdminUploadPage,
    summary="Every user's uploads, newest first (admins), filtered and paged",
    responses=problem_responses(*ROLE_ERRORS),
)
async def list_uploads(
    request: Request,
    admin: AdminUser,
    session: SessionDep,
    user_id: UserQuery = None,
    state: Annotated[list[UploadState] | None, Query()] = None,
    modality: ModalityQuery = None,
    service_level: ServiceLevel | None = None,
    created_from: Annotated[AwareDatetime | None, Query(description="ISO 8601, inclusive")] = None,
    created_to: Annotated[AwareDatetime | None, Query(description="ISO 8601, exclusive")] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> AdminUploadPage:
    rows, total = await repository.list_uploads(
        session,
        owner_id=user_id,
        states=state or (),
        modality=modality.upper() if modality else None,
        service_level=service_level,
        created_from=created_from,
        created_to=created_to,
        limit=limit,
        offset=offset,
    )
    await record_audit(
        session,
        "upload.listed",
        request=request,
        actor_id=admin.id,
        target_type="upload",
        # Which records were seen, so that "who saw this study" has an answer (promise 7).
        details={"count": len(rows), "admin": True, "ids": [str(u.id) for u, _ in rows]},
    )
    await session.commit()
    return AdminUploadPage(
        items=[
            AdminUploadSummary(
                upload_id=u.id,
                owner_id=u.owner_id,
                owner_username=username,
                state=u.state,
                study_date=u.study_date,
                modality=u.modality,
                service_level=u.service_level,
                study_description=u.study_description,
                file_count=u.file_count,
                instance_count=u.instance_count,
                bytes_total=u.total_bytes,
                failure_reason=u.failure_reason,
                created_at=u.created_at,
                updated_at=u.updated_at,
            )
            for u, username in rows
        ],
        total=total,
        limit=limit,
        offset=offset,
    )


@admin_router.post(
    "/{upload_id}/requeue",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=Requeued,
    summary="Run a failed upload's delivery again with a fresh retry budget (admins)",
    responses=problem_responses(
        *ROLE_ERRORS, UploadNotFound, UploadNotRequeueable, JobNotRequeueable, JobAlreadyQueued
    ),
)
async def requeue_upload(
    upload_id: IdPath, request: Request, admin: AdminUser, session: SessionDep
) -> Requeued:
    upload, job = await service.requeue_upload(
        session, parse_id(upload_id, UploadNotFound), admin=admin, request=request
    )
    await session.commit()
    metrics.record_upload_requeued()
    return Requeued(upload_id=upload.id, state=upload.state, job_id=job.id)
