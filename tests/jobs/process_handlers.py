"""Handlers loaded only by the `relaypacs worker` processes the tests start
(``RELAYPACS_JOB_MODULES``); the test process itself never imports this module."""

from __future__ import annotations

import asyncio
from typing import Any

import structlog

from relaypacs.jobs.registry import JobContext, job_handler

BLOCKING_KIND = "test.process.blocking"

log = structlog.get_logger(__name__)


@job_handler(BLOCKING_KIND)
async def block_until_killed(ctx: JobContext, payload: dict[str, Any]) -> None:
    # The test waits for this line, then kills or stops the process mid-job.
    log.warning("test_job_started")
    await asyncio.Event().wait()
