"""Log lines of failures carry the stack, never the data: no locals, headers or exception text."""

from __future__ import annotations

import io
import json
import logging
import sys
from pathlib import Path

import pytest
import structlog
from fastapi import Request
from sqlalchemy import text

from relaypacs.app import create_app
from relaypacs.logging import configure_logging
from tests.conftest import client_for, make_settings

PATIENT_NAME = "ROE^RICHARD^ALAN"


async def test_unhandled_error_log_has_no_patient_data_or_tokens(
    database_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    app = create_app(make_settings(database_url, tmp_path))

    @app.post("/test-only/explode")
    async def explode(request: Request) -> None:
        patient_name = (await request.json())["patient_name"]
        raise ValueError(f"cannot file study for {patient_name}")

    async with app.router.lifespan_context(app), client_for(app) as client:
        response = await client.post(
            f"/test-only/explode?patient={PATIENT_NAME}",
            json={"patient_name": PATIENT_NAME},
            headers={"Authorization": "Bearer log-secret-token", "Cookie": "sid=abc"},
        )
    assert response.status_code == 500
    output = capsys.readouterr().out
    lines = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
    errors = [line for line in lines if line.get("event") == "unhandled_error"]
    assert len(errors) == 1
    exception = errors[0]["exception"][0]
    assert exception["exc_type"] == "ValueError"
    assert any(frame["name"] == "explode" for frame in exception["frames"])
    for secret in ("ROE", "log-secret-token", "sid=abc"):
        assert secret not in output


async def test_debug_logging_does_not_let_libraries_log_the_data_they_carry(
    database_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An operator debugging RelayPACS sets RELAYPACS_LOG_LEVEL=DEBUG: SQLAlchemy and the
    database drivers would then log every statement with its bound values (patient names)."""
    app = create_app(make_settings(database_url, tmp_path, log_level="DEBUG"))
    try:
        async with app.router.lifespan_context(app):
            async with app.state.sessionmaker() as session:
                echoed = await session.scalar(text("SELECT :name"), {"name": PATIENT_NAME})
            assert echoed == PATIENT_NAME
            structlog.get_logger("relaypacs.tests").debug("debug_probe")
        output = capsys.readouterr().out
        assert "debug_probe" in output  # RelayPACS's own debug lines are there
        assert "ROE" not in output
    finally:
        configure_logging("WARNING")  # as the other tests' apps have it


def test_lines_go_to_stdout_as_it_is_now_not_as_it_was_when_configured(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A stream replaced and closed since logging was configured (a test harness's capture, a
    # redirect) made every later log call raise: in a job handler, the job lost its outcome.
    first, now = io.StringIO(), io.StringIO()
    monkeypatch.setattr(sys, "stdout", first)
    try:
        configure_logging("INFO")
        monkeypatch.setattr(sys, "stdout", now)
        first.close()
        structlog.get_logger("relaypacs.tests").error("job_failed", reason="probe")
        logging.getLogger("relaypacs.tests.stdlib").error("stdlib_probe")
    finally:
        configure_logging("WARNING")  # as the other tests' apps have it
    events = [json.loads(line)["event"] for line in now.getvalue().splitlines()]
    assert events == ["job_failed", "stdlib_probe"]


def test_an_exception_group_and_its_notes_are_logged_without_their_text(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # asyncio.TaskGroup raises groups: every member, and every note, may quote patient data.
    out = io.StringIO()
    monkeypatch.setattr(sys, "stdout", out)
    try:
        configure_logging("INFO")
        try:
            inner = ValueError(f"no study for {PATIENT_NAME}")
            inner.add_note(f"while filing {PATIENT_NAME}")
            raise ExceptionGroup("two jobs failed", [inner, KeyError(PATIENT_NAME)])
        except ExceptionGroup:
            structlog.get_logger("relaypacs.tests").exception("jobs_failed")
    finally:
        configure_logging("WARNING")  # as the other tests' apps have it
    line = json.loads(out.getvalue().splitlines()[-1])
    group = line["exception"][0]
    assert [m[0]["exc_type"] for m in group["exceptions"]] == ["ValueError", "KeyError"]
    assert "ROE" not in out.getvalue()
