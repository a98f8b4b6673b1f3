"""Liveness, readiness and Prometheus metrics, at the root (not under /api/v1)."""

from __future__ import annotations

from typing import Literal

import anyio
from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST
from pydantic import BaseModel

from relaypacs.operations.metrics import render_metrics
from relaypacs.operations.readiness import Readiness
from relaypacs.operations.service import collect_scrape_time_metrics

router = APIRouter(tags=["operations"])


class Health(BaseModel):
    status: Literal["ok"]


class ReadinessReport(BaseModel):
    status: Literal["ready", "not_ready"]
    checks: dict[str, str]


@router.get("/healthz", response_model=Health, summary="Liveness: the process answers")
async def healthz() -> Health:
    return Health(status="ok")


@router.get(
    "/readyz",
    response_model=ReadinessReport,
    summary="Readiness: every dependency answers",
    responses={503: {"model": ReadinessReport, "description": "A dependency is unavailable"}},
)
async def readyz(request: Request) -> JSONResponse:
    readiness: Readiness = request.app.state.readiness
    checks = await readiness.run()
    ready = all(result == "ok" for result in checks.values())
    report = ReadinessReport(status="ready" if ready else "not_ready", checks=checks)
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
