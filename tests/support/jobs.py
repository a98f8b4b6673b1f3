"""Running one job handler by hand, with the context a worker would give it."""

from __future__ import annotations

import uuid

from fastapi import FastAPI

from relaypacs.config import Settings
from relaypacs.jobs.registry import JobContext


def job_context(app: FastAPI, kind: str, settings: Settings | None = None) -> JobContext:
    resources = app.state.resources
    return JobContext(
        resources=resources,
        sessionmaker=resources.sessionmaker,
        settings=settings or resources.settings,
        job_id=uuid.uuid4(),
        kind=kind,
        attempt=1,
    )
