"""Sentry gets errors without personal data: a real SDK sending to a real local ingest endpoint."""

from __future__ import annotations

import gzip
import json
import threading
import zlib
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import sentry_sdk
import structlog
from fastapi import Request

from relaypacs.app import create_app
from tests.conftest import client_for, make_settings

PATIENT_NAME = "DOE^JANE^MARIE"


class _Ingest(BaseHTTPRequestHandler):
    received: list[bytes]

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        encoding = self.headers.get("Content-Encoding", "")
        if encoding == "gzip":
            body = gzip.decompress(body)
        elif encoding == "deflate":
            body = zlib.decompress(body)
        self.server.received.append(body)  # type: ignore[attr-defined]
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def sentry_ingest() -> Iterator[tuple[str, list[bytes]]]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Ingest)
    server.received = []  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://publickey@127.0.0.1:{server.server_port}/42", server.received  # type: ignore[attr-defined]
    finally:
        sentry_sdk.get_client().close()
        sentry_sdk.init()  # back to a disabled client for the tests that follow
        server.shutdown()
        server.server_close()


def _events(received: list[bytes]) -> list[dict[str, Any]]:
    events = []
    for envelope in received:
        lines = envelope.split(b"\n")
        for header, payload in zip(lines[1::2], lines[2::2], strict=False):
            if json.loads(header).get("type") == "event":
                events.append(json.loads(payload))
    return events


async def test_unhandled_error_reaches_sentry_without_patient_data(
    database_url: str, tmp_path: Path, sentry_ingest: tuple[str, list[bytes]]
) -> None:
    dsn, received = sentry_ingest
    app = create_app(make_settings(database_url, tmp_path, sentry_dsn=dsn))

    @app.post("/test-only/explode")
    async def explode(request: Request) -> None:
        patient_name = (await request.json())["patient_name"]
        raise ValueError(f"cannot file study for {patient_name}")

    async with app.router.lifespan_context(app), client_for(app) as client:
        response = await client.post(
            f"/test-only/explode?patient={PATIENT_NAME}",
            json={"patient_name": PATIENT_NAME},
            headers={
                "Authorization": "Bearer secret-token",
                "X-Request-ID": "req-sentry-1",
                "Cookie": f"session={PATIENT_NAME}",
            },
        )
    assert response.status_code == 500
    assert sentry_sdk.flush(timeout=10) is None
    events = _events(received)
    assert len(events) == 1
    event = events[0]
    exception = event["exception"]["values"][-1]
    assert exception["type"] == "ValueError"
    assert any(f["function"] == "explode" for f in exception["stacktrace"]["frames"])
    assert event["tags"]["request_id"] == "req-sentry-1"
    raw = json.dumps(event)
    for secret in (PATIENT_NAME, "DOE", "secret-token"):
        assert secret not in raw


async def test_without_a_dsn_nothing_is_sent(
    database_url: str, tmp_path: Path, sentry_ingest: tuple[str, list[bytes]]
) -> None:
    _, received = sentry_ingest
    app = create_app(make_settings(database_url, tmp_path, sentry_dsn=None))

    @app.get("/test-only/explode")
    async def explode() -> None:
        raise ValueError("boom")

    async with app.router.lifespan_context(app), client_for(app) as client:
        assert (await client.get("/test-only/explode")).status_code == 500
    sentry_sdk.flush(timeout=5)
    assert received == []
    assert sentry_sdk.get_client().dsn is None


async def test_a_job_error_logged_with_its_traceback_reaches_sentry_scrubbed(
    database_url: str, tmp_path: Path, sentry_ingest: tuple[str, list[bytes]]
) -> None:
    dsn, received = sentry_ingest
    create_app(make_settings(database_url, tmp_path, sentry_dsn=dsn))
    log = structlog.get_logger("relaypacs.jobs.worker")
    try:
        raise RuntimeError(f"forwarding the study of {PATIENT_NAME} failed")
    except RuntimeError:
        log.exception("job_error", error_type="RuntimeError")
    log.warning("job_retry_scheduled", delay_seconds=10)
    sentry_sdk.flush(timeout=10)
    events = _events(received)
    assert len(events) == 1
    exception = events[0]["exception"]["values"][-1]
    assert exception["type"] == "RuntimeError"
    assert PATIENT_NAME not in json.dumps(events[0])
