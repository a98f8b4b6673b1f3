"""Schemathesis against a running gateway's OpenAPI for reports, notifications, analytics and
the admin's uploads: every generated request, valid or not, gets a non-5xx answer that matches
the documented status codes, media types and schemas.

The SSE stream is left out (a valid request never ends); it has tests of its own.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.support.conformance import PASSWORD, conformance_failures, create_admin
from tests.support.databases import backend_of, throwaway_database
from tests.support.servers import RelayServer

PATHS = r"^/api/v1/(reports|notifications(?!/stream$)|analytics|admin/uploads)"


@pytest.fixture(scope="module")
def gateway(
    database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, dict[str, str]]]:
    data_dir: Path = tmp_path_factory.mktemp("schemathesis-reports")
    # A database of its own: the session's in-process app shares the worker's database, and its
    # job worker can be mid-transaction while the event loop is paused between tests. On SQLite
    # that holds the write lock, and this fixture's blocking set-up would wait out busy_timeout.
    with throwaway_database(backend_of(database_url), data_dir) as url:
        server = RelayServer(
            data_dir=data_dir,
            database_url=url,
            log_path=data_dir / "serve.log",
            log_level="ERROR",
            analytics_rate_limit="100000/minute",
        )
        admin = f"fuzz_admin_{uuid.uuid4().hex[:8]}"
        create_admin(server, admin)
        server.start()
        try:
            login = requests.post(
                f"{server.url}/api/v1/auth/login",
                json={"username": admin, "password": PASSWORD},
                timeout=30,
            )
            login.raise_for_status()
            yield server.url, {"Authorization": f"Bearer {login.json()['access_token']}"}
        finally:
            server.stop()


@pytest.mark.slow
def test_reports_notifications_and_analytics_conform_to_their_openapi(
    gateway: tuple[str, dict[str, str]],
) -> None:
    base_url, headers = gateway
    failures = conformance_failures(
        base_url, PATHS, lambda path: headers, max_examples=10, min_operations=15
    )
    assert not failures, "\n\n".join(failures)
