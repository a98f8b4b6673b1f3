"""Schemathesis against a running gateway's OpenAPI for reports, notifications, analytics and
the admin's uploads: every generated request, valid or not, gets a non-5xx answer that matches
the documented status codes, media types and schemas.

The SSE stream is left out (a valid request never ends); it has tests of its own.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.checks import not_a_server_error
from schemathesis.generation.modes import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.support.s3 import free_port

PATHS = r"^/api/v1/(reports|notifications(?!/stream$)|analytics|admin/uploads)"
PASSWORD = "Vq8#relay-Pacs!"
MAX_EXAMPLES = 10


@pytest.fixture(scope="module")
def gateway(
    database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, dict[str, str]]]:
    data_dir = tmp_path_factory.mktemp("schemathesis-reports")
    port = free_port()
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        **{k: v for k, v in os.environ.items() if k == "PYTHONPATH"},
        "RELAYPACS_DATA_DIR": str(data_dir),
        "RELAYPACS_DATABASE_URL": database_url,
        "RELAYPACS_PORT": str(port),
        "RELAYPACS_BCRYPT_ROUNDS": "4",
        "RELAYPACS_LOG_LEVEL": "ERROR",
        "RELAYPACS_ANALYTICS_RATE_LIMIT": "100000/minute",
    }
    admin = f"fuzz_admin_{uuid.uuid4().hex[:8]}"
    subprocess.run(
        [sys.executable, "-m", "relaypacs", "admin", "create-user", "--username", admin,
         "--email", f"{admin}@example.org", "--role", "admin", "--password", PASSWORD],
        env=env, check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    server = subprocess.Popen(
        [sys.executable, "-m", "relaypacs", "serve"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base_url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if requests.get(f"{base_url}/healthz", timeout=1).status_code == 200:
                    break
            except requests.ConnectionError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise
                time.sleep(0.1)  # polling a port: there is no event to await
        login = requests.post(
            f"{base_url}/api/v1/auth/login",
            json={"username": admin, "password": PASSWORD},
            timeout=30,
        )
        login.raise_for_status()
        yield base_url, {"Authorization": f"Bearer {login.json()['access_token']}"}
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


@pytest.mark.slow
def test_reports_notifications_and_analytics_conform_to_their_openapi(
    gateway: tuple[str, dict[str, str]],
) -> None:
    base_url, headers = gateway
    api = schemathesis.openapi.from_url(f"{base_url}/openapi.json").include(path_regex=PATHS)
    failures: list[str] = []
    operations = [result.ok() for result in api.get_all_operations()]
    assert len(operations) >= 15, [op.label for op in operations]
    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

            @given(case=operation.as_strategy(generation_mode=mode))
            @settings(
                max_examples=MAX_EXAMPLES,
                deadline=None,
                database=None,
                suppress_health_check=list(HealthCheck),
            )
            def exercise(case: Any) -> None:
                case.call_and_validate(
                    headers=headers,
                    checks=[
                        not_a_server_error,
                        status_code_conformance,
                        content_type_conformance,
                        response_schema_conformance,
                    ],
                )

            try:
                exercise()
            except Unsatisfiable:
                assert mode is GenerationMode.NEGATIVE
            except Exception as exc:  # one report per operation and mode
                failures.append(f"{operation.label} [{mode.value}]: {exc}")
    assert not failures, "\n\n".join(failures)
