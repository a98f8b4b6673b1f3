"""Liveness, readiness and Prometheus metrics, at the root (not under /api/v1)."""

from __future__ import annotations

import asyncio
from typing import Literal

import anyio
from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST
from pydantic import BaseModel

from relaypacs.jobs.models import JobState
from relaypacs.operations.metrics import render_metrics
from relaypacs.operations.readiness import Readiness
from relaypacs.operations.service import collect_scrape_time_metrics, read_queue

router = APIRouter(tags=["operations"])


class Health(BaseModel):
    status: Literal["ok"]


class QueueSummary(BaseModel):
    """Shown, not judged: a backlog is the queue doing its job (a PACS that is down shows in
    its own check)."""

    jobs_queued: int
    jobs_running: int
    oldest_due_job_age_seconds: float
    studies_awaiting_delivery: int


class ReadinessReport(BaseModel):
    status: Literal["ready", "not_ready"]
    checks: dict[str, str]
    #: ``None`` when the database could not say in time.
    queue: QueueSummary | None = None


@router.get("/healthz", response_model=Health, summary="Liveness: the process answers")
async def healthz() -> Health:
    return Health(status="ok")


@router.get(
    "/readyz",
    response_model=ReadinessReport,
    summary="Readiness: every dependency answers (database, chunk store, each PACS); also shows "
    "the queue's depth",
    description="`checks` also lists `rate_limiter` (Redis) when one is configured; while it is "
    "down the gateway counts rate limits in its own memory, so it stays ready.",
    responses={503: {"model": ReadinessReport, "description": "A dependency is unavailable"}},
)
async def readyz(request: Request) -> JSONResponse:
    readiness: Readiness = request.app.state.readiness
    checks, queue = await asyncio.gather(readiness.run(), read_queue(request.app.state.resources))
    ready = readiness.is_ready(checks)
    report = ReadinessReport(
        status="ready" if ready else "not_ready",
        checks=checks,
        queue=None
        if queue is None
        else QueueSummary(
            jobs_queued=queue.jobs_in(JobState.queued),
            jobs_running=queue.jobs_in(JobState.running),
            oldest_due_job_age_seconds=round(queue.oldest_due_job_age_seconds, 1),
            studies_awaiting_delivery=queue.studies_awaiting_delivery(),
        ),
    )
    return JSONResponse(report.model_dump(), status_code=200 if ready else 503)


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    response_class=Response,
    responses={200: {"content": {CONTENT_TYPE_LATEST: {}}}},
)
async def metrics(request: Request) -> Response:
    families = await collect_scrape_time_metrics(request.app.state.resources)
    body = await anyio.to_thread.run_sync(render_metrics, families)
    return Response(body, media_type=CONTENT_TYPE_LATEST)
